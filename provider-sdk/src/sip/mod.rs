//! The SIP layer (to be written).
