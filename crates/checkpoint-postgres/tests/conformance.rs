//! The shared conformance suite on a real PostgreSQL, one fresh schema per case.

mod support;

checkpoint_core::conformance_tests!(support::store());
