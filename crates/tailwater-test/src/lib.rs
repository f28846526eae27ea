//! tailwater-test (work in progress).
