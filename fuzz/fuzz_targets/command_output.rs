#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| opsflow_fuzz::command_output(data));
