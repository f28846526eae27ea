//! tailwater-redis (work in progress).
