//! Every metric name portcullis exports, in one place, as it appears on
//! `/metrics` (counters with their `_total` suffix, histograms without the
//! `_bucket`/`_sum`/`_count` suffixes). Dashboards and alert rules may use
//! only these (a test checks them against [`all`]).

/// notAfter of every served certificate.
pub const CERT_EXPIRATION: &str = "portcullis_certificate_expiration_timestamp_seconds";
/// notBefore of every served certificate.
pub const CERT_NOT_BEFORE: &str = "portcullis_certificate_not_before_timestamp_seconds";
/// Earliest served leaf notAfter per listener.
pub const LISTENER_CERT_EXPIRATION: &str =
    "portcullis_listener_certificate_expiration_timestamp_seconds";
/// Planned renewal time of a managed certificate.
pub const CERT_RENEWAL: &str = "portcullis_certificate_renewal_timestamp_seconds";
/// Ready condition of a managed certificate.
pub const CERT_READY: &str = "portcullis_certificate_ready_status";
/// ARI window start.
pub const CERT_ARI_START: &str = "portcullis_certificate_ari_window_start_timestamp_seconds";
/// ARI window end.
pub const CERT_ARI_END: &str = "portcullis_certificate_ari_window_end_timestamp_seconds";
/// Next retry after a failed issuance.
pub const CERT_NEXT_RETRY: &str = "portcullis_certificate_next_retry_timestamp_seconds";
/// Consecutive failed issuance attempts.
pub const CERT_FAILED_ATTEMPTS: &str = "portcullis_certificate_failed_attempts";
/// ACME profile (an info metric; exported as `..._info`).
pub const CERT_PROFILE: &str = "portcullis_certificate_profile";
/// cert-manager's expiry gauge.
pub const CM_EXPIRATION: &str = "certmanager_certificate_expiration_timestamp_seconds";
/// cert-manager's renewal gauge.
pub const CM_RENEWAL: &str = "certmanager_certificate_renewal_timestamp_seconds";
/// cert-manager's Ready gauge.
pub const CM_READY: &str = "certmanager_certificate_ready_status";

/// Requests by gateway, listener, route, backend and status class.
pub const REQUESTS: &str = "portcullis_http_requests";
/// Request duration until the response head.
pub const REQUEST_DURATION: &str = "portcullis_http_request_duration_seconds";
/// Upstream failures by backend and reason.
pub const UPSTREAM_ERRORS: &str = "portcullis_upstream_errors";
/// Connections accepted per socket.
pub const CONNECTIONS_ACCEPTED: &str = "portcullis_connections_accepted";
/// Connections open per socket.
pub const CONNECTIONS_ACTIVE: &str = "portcullis_connections_active";
/// Connections accepted per listener (when the listener is known).
pub const LISTENER_CONNECTIONS_ACCEPTED: &str = "portcullis_listener_connections_accepted";
/// Connections open per listener (when the listener is known).
pub const LISTENER_CONNECTIONS_ACTIVE: &str = "portcullis_listener_connections_active";
/// Times a socket stopped accepting at `--max-connections`.
pub const CONNECTION_LIMIT_REACHED: &str = "portcullis_connection_limit_reached";
/// The `--max-connections` setting.
pub const CONNECTION_LIMIT: &str = "portcullis_connection_limit";
/// TLS handshakes by listener, mode, version and result.
pub const TLS_HANDSHAKES: &str = "portcullis_tls_handshakes";
/// TLS handshake failures by socket and reason.
pub const TLS_HANDSHAKE_FAILURES: &str = "portcullis_tls_handshake_failures";

/// Configuration reloads by result.
pub const RELOADS: &str = "portcullis_config_reloads";
/// Reload duration.
pub const RELOAD_DURATION: &str = "portcullis_config_reload_duration_seconds";
/// Time of the last reload that loaded every file.
pub const RELOAD_LAST_SUCCESS: &str = "portcullis_config_last_reload_success_timestamp_seconds";
/// Manifest files that did not load on the last reload.
pub const CONFIG_PROBLEMS: &str = "portcullis_config_load_problems";
/// Sockets that could not be bound.
pub const BIND_ERRORS: &str = "portcullis_config_bind_errors";
/// Objects by kind and status condition.
pub const CONFIG_OBJECTS: &str = "portcullis_config_objects";
/// Build information (an info metric; exported as `..._info`).
pub const BUILD: &str = "portcullis_build";

/// ACME requests by endpoint and status.
pub const ACME_REQUESTS: &str = "portcullis_acme_requests";
/// ACME request duration.
pub const ACME_REQUEST_DURATION: &str = "portcullis_acme_request_duration_seconds";
/// ACME orders by outcome.
pub const ACME_ORDERS: &str = "portcullis_acme_orders";
/// ACME challenges by type and outcome.
pub const ACME_CHALLENGES: &str = "portcullis_acme_challenges";
/// ACME rate-limit answers.
pub const ACME_RATE_LIMITED: &str = "portcullis_acme_rate_limited";
/// Failed issuances by reason.
pub const ISSUANCE_FAILURES: &str = "portcullis_certificate_issuance_failures";

/// 1 while this replica holds the leader Lease (Kubernetes mode).
pub const KUBERNETES_LEADER: &str = "portcullis_kubernetes_leader";
/// Writes to the API server by kind and outcome.
pub const KUBERNETES_WRITES: &str = "portcullis_kubernetes_writes";
/// Failed watch requests by kind.
pub const KUBERNETES_WATCH_ERRORS: &str = "portcullis_kubernetes_watch_errors";
/// Objects the API holds that portcullis refuses.
pub const KUBERNETES_REFUSED: &str = "portcullis_kubernetes_refused_objects";

/// Process resident memory.
pub const PROCESS_RSS: &str = "process_resident_memory_bytes";
/// Process CPU seconds.
pub const PROCESS_CPU: &str = "process_cpu_seconds";
/// Open file descriptors.
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
/// File descriptor limit.
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
/// Process start time.
pub const PROCESS_START: &str = "process_start_time_seconds";

/// Every series name a scrape may show, with the suffixes the exposition
/// adds (`_total`, `_info`, `_bucket`, `_sum`, `_count`).
pub fn all() -> Vec<String> {
    let counters = [
        REQUESTS,
        UPSTREAM_ERRORS,
        CONNECTIONS_ACCEPTED,
        LISTENER_CONNECTIONS_ACCEPTED,
        CONNECTION_LIMIT_REACHED,
        TLS_HANDSHAKES,
        TLS_HANDSHAKE_FAILURES,
        RELOADS,
        ACME_REQUESTS,
        ACME_ORDERS,
        ACME_CHALLENGES,
        ACME_RATE_LIMITED,
        ISSUANCE_FAILURES,
        KUBERNETES_WRITES,
        KUBERNETES_WATCH_ERRORS,
        PROCESS_CPU,
    ];
    let histograms = [REQUEST_DURATION, RELOAD_DURATION, ACME_REQUEST_DURATION];
    let gauges = [
        CERT_EXPIRATION,
        CERT_NOT_BEFORE,
        LISTENER_CERT_EXPIRATION,
        CERT_RENEWAL,
        CERT_READY,
        CERT_ARI_START,
        CERT_ARI_END,
        CERT_NEXT_RETRY,
        CERT_FAILED_ATTEMPTS,
        CM_EXPIRATION,
        CM_RENEWAL,
        CM_READY,
        CONNECTIONS_ACTIVE,
        LISTENER_CONNECTIONS_ACTIVE,
        CONNECTION_LIMIT,
        RELOAD_LAST_SUCCESS,
        CONFIG_PROBLEMS,
        BIND_ERRORS,
        CONFIG_OBJECTS,
        KUBERNETES_LEADER,
        KUBERNETES_REFUSED,
        PROCESS_RSS,
        PROCESS_OPEN_FDS,
        PROCESS_MAX_FDS,
        PROCESS_START,
    ];
    let mut out: Vec<String> = gauges.iter().map(|n| n.to_string()).collect();
    out.extend(counters.iter().map(|n| format!("{n}_total")));
    out.extend([CERT_PROFILE, BUILD].iter().map(|n| format!("{n}_info")));
    for h in histograms {
        out.extend(
            ["bucket", "sum", "count"]
                .iter()
                .map(|s| format!("{h}_{s}")),
        );
    }
    out
}
