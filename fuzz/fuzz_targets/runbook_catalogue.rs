#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| opsflow_fuzz::runbook_catalogue(data));
