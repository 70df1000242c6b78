//! Small conversions between the CA's types and central's storage types.
