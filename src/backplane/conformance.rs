//! The backplane contract, written against the trait alone so that every
//! implementation runs the same suite.
