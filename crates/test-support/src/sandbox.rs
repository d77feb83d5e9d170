//! The KKTIX sandbox served on `127.0.0.1:0`.

use std::net::SocketAddr;

use autopilot_sandbox::{RunningSandbox, Sandbox, SandboxConfig};

/// `config`'s sandbox and the server answering for it (its `base_url`).
pub async fn serve(config: SandboxConfig) -> (Sandbox, RunningSandbox) {
    let sandbox = Sandbox::new(config);
    let running = sandbox
        .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("the sandbox serves on a local port");
    (sandbox, running)
}

/// A sandbox where nothing happens between runs unless the test makes it: no purchases,
/// refunds or late ATM payments per step.
pub fn still(seed: u64) -> SandboxConfig {
    let mut config = SandboxConfig::demo(seed);
    config.purchases_per_step = 0.0;
    config.refund_share = 0.0;
    config.atm_pay_per_step = 0.0;
    config
}
