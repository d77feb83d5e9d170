//! Fakes of the upstreams, speaking their documented wire formats, for the test suites and
//! benches of every crate. Depends on no workspace crate, so nothing here can lean on the
//! code under test.

pub mod mailgun;
