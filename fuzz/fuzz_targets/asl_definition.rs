#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| opsflow_fuzz::asl_definition(data));
