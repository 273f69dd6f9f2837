"""smsmenu: SMS/USSD menu server for telecom air recharge (空中充值)."""

__version__ = "0.1.0"
