"""The SMPP layer: pure PDU-level modules and session, the SMPP link (our ESME) and the SMSC
simulator."""
