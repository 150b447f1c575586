//! Helpers for end-to-end tests against real services.
