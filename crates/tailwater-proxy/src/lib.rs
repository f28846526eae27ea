//! tailwater-proxy (work in progress).
