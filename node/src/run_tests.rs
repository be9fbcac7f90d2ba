use std::path::Path;

use super::{Checked, RunError, RunOptions, check};
use crate::config::{Config, ConfigError};

/// `check` with the options `change` sets, on `home`.
fn checked(home: &Path, change: impl FnOnce(&mut RunOptions)) -> Result<Checked, RunError> {
    let mut options = RunOptions {
        home: home.to_owned(),
        ..RunOptions::default()
    };
    change(&mut options);
    check(&options)
}

#[test]
fn every_option_is_checked_from_the_config_alone() {
    // A home with nothing but its config: checking needs nothing else, so a bad option is
    // found before the node key, keystore or database is opened.
    let home = tempfile::tempdir().unwrap();
    Config::new("checked").save(home.path()).unwrap();

    let fine = checked(home.path(), |_| {}).expect("the defaults are fine");
    assert_eq!(fine.order_defaults.plugin, dta_actors::plugin::MILAGRO);
    let overridden = checked(home.path(), |o| {
        o.listen = Some(vec!["/ip4/127.0.0.1/tcp/0".into()]);
        o.api = Some("127.0.0.1:0".into());
        o.no_mdns = true;
    })
    .expect("good overrides are fine");
    assert_eq!(overridden.listen.len(), 1);
    assert!(!overridden.config.mdns);

    let refused = |change: fn(&mut RunOptions)| checked(home.path(), change).unwrap_err();
    assert!(matches!(
        refused(|o| o.listen = Some(vec!["not-a-multiaddr".into()])),
        RunError::Config(ConfigError::Multiaddr { .. })
    ));
    assert!(matches!(
        refused(|o| o.bootstrap = Some(vec!["/ip4/127.0.0.1/tcp".into()])),
        RunError::Config(ConfigError::Multiaddr { .. })
    ));
    assert!(matches!(
        refused(|o| o.api = Some("nowhere".into())),
        RunError::Config(ConfigError::Api(_))
    ));
    assert!(matches!(
        refused(|o| o.plugin = Some("no-such-plugin".into())),
        RunError::Plugin { .. }
    ));
    assert!(matches!(
        refused(|o| o.fiduciaries = vec!["not-a-cid".into()]),
        RunError::Fiduciary { .. }
    ));
    // Without named fiduciaries, `/v1` orders go to this node alone: threshold 1.
    assert!(matches!(
        refused(|o| o.threshold = Some(2)),
        RunError::Threshold {
            threshold: 2,
            fiduciaries: 1
        }
    ));
    assert!(matches!(
        refused(|o| o.threshold = Some(0)),
        RunError::Threshold { threshold: 0, .. }
    ));
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 1);
}
