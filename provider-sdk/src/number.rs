//! Phone numbers (E.164) and number prefixes.
