//! Specification of the session rules.
