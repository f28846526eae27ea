pub(crate) mod credits;
