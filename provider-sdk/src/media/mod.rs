//! The media relay (to be written).
