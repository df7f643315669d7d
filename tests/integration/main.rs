//! Integration tests against the real stack (scripts/stack/up.sh): RabbitMQ, Garage behind
//! TLS, and HTTPS media servers run by the tests. Run them all with scripts/test.sh.
//!
//! One module per area; add yours to the list below.

mod support;

mod archive_faults;
mod archive_integrity;
mod archive_pipeline;
mod readme;
mod refetch;
mod retention;
mod security_allowlist;
mod security_broker_tls;
mod security_events;
mod security_get_output;
mod security_keys;
mod security_leaks;
mod security_ssrf;
mod stack_smoke;
mod tenant_keys;
mod validate_cli;
mod webhook;
mod worker_broker;
mod worker_commands;
mod worker_flow;
mod worker_harness;
mod worker_outage;
mod worker_resilience;
mod worker_shutdown;
