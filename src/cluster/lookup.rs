//! Owner lookups for the proxy (to come).
