//! Kubernetes adapter (grows with the controller issue).
