//! palaver-sip: the SIP trunk gateway (direct routing).
