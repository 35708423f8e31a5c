//! Property test: the customer never observes what it must not.
