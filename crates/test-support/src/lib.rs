//! What the test suites and benches of every crate share, so a test reads as its scenario:
//! fast retry policies ([`fast`]), fakes of the upstreams speaking their documented wire
//! formats ([`mailgun`], [`klaviyo`], [`discord`], [`gather`]) and the KKTIX sandbox served
//! on a local port ([`sandbox`]), and the machine line every benchmark prints ([`bench`]). The fakes depend only on the wire formats, never on the
//! client code under test (the Klaviyo fake takes the API revision it requires from the
//! core's `KLAVIYO_REVISION`).

pub mod bench;
pub mod discord;
pub mod fast;
pub mod gather;
pub mod klaviyo;
pub mod mailgun;
pub mod sandbox;
