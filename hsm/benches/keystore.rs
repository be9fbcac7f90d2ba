//! `cargo bench -p dta-hsm`: wrap and unwrap of a 32-byte secret (a share's size) on each
//! backend. The PKCS#11 half needs a module and a SoftHSM2 configuration (`DTA_PKCS11_MODULE`,
//! `SOFTHSM2_CONF`); without them it says so and measures the software keystore only.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use dta_hsm::{KdfParams, KekPolicy, Keystore, Pkcs11Config, Pkcs11Keystore, SoftKeystore};
use zeroize::Zeroizing;

fn bench_backend(c: &mut Criterion, keystore: Arc<dyn Keystore>) {
    let secret = [0x5au8; 32];
    let blob = keystore.wrap("share/bench", &secret).unwrap();
    let backend = keystore.backend();
    c.bench_function(&format!("keystore/{backend}/wrap"), |b| {
        b.iter(|| keystore.wrap("share/bench", black_box(&secret)).unwrap())
    });
    c.bench_function(&format!("keystore/{backend}/unwrap"), |b| {
        b.iter(|| keystore.unwrap("share/bench", black_box(&blob)).unwrap())
    });
}

fn keystores(c: &mut Criterion) {
    let soft = SoftKeystore::derive(b"bench passphrase", &KdfParams::recommended()).unwrap();
    bench_backend(c, Arc::new(soft));
    let (Some(module), Some(_)) = (
        std::env::var_os("DTA_PKCS11_MODULE"),
        std::env::var_os("SOFTHSM2_CONF"),
    ) else {
        eprintln!("keystore/pkcs11: not run (set DTA_PKCS11_MODULE and SOFTHSM2_CONF)");
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let label = format!("bench-{nanos:x}");
    dta_hsm::pkcs11::init_token(module.as_ref(), &label, "bench-so-pin", "bench-pin").unwrap();
    let config = Pkcs11Config::new(module, label, Zeroizing::new("bench-pin".to_owned()));
    let token = Pkcs11Keystore::open(&config, KekPolicy::CreateIfMissing).unwrap();
    bench_backend(c, Arc::new(token));
}

criterion_group!(benches, keystores);
criterion_main!(benches);
