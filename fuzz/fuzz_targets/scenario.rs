//! Scenario files, through the very parser and checks `dta scenario run` uses. No file
//! panics; a scenario that is taken writes back as TOML that is taken again and writes the
//! same (so what the runner acts on is what the file said).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(scenario) = dta_api::scenario::parse(text) else {
        return;
    };
    let written = toml::to_string(&scenario).expect("a scenario writes as TOML");
    let again = dta_api::scenario::parse(&written)
        .unwrap_or_else(|e| panic!("a written scenario is refused: {e}\n{written}"));
    assert_eq!(
        toml::to_string(&again).expect("a scenario writes as TOML"),
        written,
        "a scenario read back writes differently"
    );
});
