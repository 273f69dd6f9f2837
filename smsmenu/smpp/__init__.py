"""The SMPP layer: pure PDU-level modules, the gateway (ESME) and the SMSC simulator."""
