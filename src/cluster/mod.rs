//! Kubernetes mode: portcullis as a Gateway API controller against an API server.
pub mod status_patch;
