//! Billing meter, durable usage ledger, Prometheus registry.
