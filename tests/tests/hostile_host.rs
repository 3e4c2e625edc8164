//! The deployer's CLI against a hostile host: an in-test peer that answers
//! `/sparebox/deploy/1` with a validly signed agreement but a path for an
//! agent id, a URL that points elsewhere, or an id it did not sign. The CLI
//! refuses each with its reason code, and no file is written anywhere.
#![allow(clippy::unwrap_used)] // test files: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use sparebox_network::adverts::Verdict;
use sparebox_network::{Inbound, NetConfig};
use sparebox_protocol::identity::{Keypair, PublicKey};
use sparebox_protocol::rpc::{
    ArtifactRequest, ArtifactResponse, ControlRequest, ControlResponse, DeployRequest,
    DeployResponse, Rejection, SyncResponse,
};
use sparebox_protocol::{Agreement, Checks, DeploymentOffer, Envelope, Message, now_secs, sha256};
use sparebox_tests::{Deployer, repo_root, within};

/// A host that accepts every offer, signs an agreement for `signed_id`,
/// and answers with `agent_id` and `api_url`.
struct FakeHost {
    key: Keypair,
    signed_id: String,
    agent_id: String,
    api_url: String,
}

#[async_trait::async_trait]
impl Inbound for FakeHost {
    fn validate_advert(&self, _: Option<PublicKey>, _: &[u8]) -> Verdict {
        Verdict::Ignore("fake host")
    }
    fn synced(&self, _: PublicKey, _: SyncResponse) {}
    fn sync(&self) -> SyncResponse {
        SyncResponse::default()
    }
    async fn deploy(&self, _: PublicKey, req: DeployRequest) -> DeployResponse {
        let env = Envelope::from_bytes(&req.offer, DeploymentOffer::max_envelope()).unwrap();
        let offer = env.verify::<DeploymentOffer>(&Checks::now()).unwrap();
        let token = "ab".repeat(32);
        let agreement = Agreement {
            version: Agreement::VERSION,
            offer: offer.envelope.clone(),
            offer_id: offer.message.offer_id,
            host: self.key.public(),
            deployer: offer.message.deployer,
            agent_id: self.signed_id.clone(),
            accepted_at: now_secs(),
            token_sha256: sha256(token.as_bytes()),
        };
        DeployResponse::Accepted {
            agreement: Envelope::seal(&agreement, &self.key).unwrap().to_bytes(),
            agent_id: self.agent_id.clone(),
            api_url: self.api_url.clone(),
            token,
        }
    }
    async fn control(&self, _: PublicKey, _: ControlRequest) -> ControlResponse {
        ControlResponse::Rejected(Rejection::new("fake", "fake host"))
    }
    async fn artifact(&self, _: PublicKey, _: ArtifactRequest) -> ArtifactResponse {
        ArtifactResponse::NotFound
    }
}

/// Runs `sparebox deploy` against a fake host answering as given; returns
/// the CLI's stderr.
async fn deploy_to(signed_id: &str, agent_id: &str, api_url: &str, d: &Deployer) -> String {
    let key = Keypair::generate().unwrap();
    let host = key.public();
    let fake = Arc::new(FakeHost {
        key: key.clone(),
        signed_id: signed_id.into(),
        agent_id: agent_id.into(),
        api_url: api_url.into(),
    });
    let cfg = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
        ..NetConfig::default()
    };
    let (client, _task) = sparebox_network::start(&key, cfg, fake).await.unwrap();
    let addr = format!(
        "{}/p2p/{}",
        client.info().await.unwrap().listen_addrs[0],
        host.to_peer_id()
    );
    let spec = repo_root().join("examples/specs/echo-wasi.toml");
    let (ok, stdout, stderr) = d
        .cli(&[
            "deploy",
            spec.to_str().unwrap(),
            "--host",
            &host.to_peer_id(),
            "--addr",
            &addr,
        ])
        .await;
    client.shutdown().await;
    assert!(!ok, "the CLI accepted a hostile answer: {stdout}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_a_hosts_hostile_answers_and_writes_nothing() {
    within(Duration::from_secs(120), async {
        let d = Deployer::new().unwrap();
        let escape = format!(
            "../../../../../../tmp/sparebox-escape-{}",
            std::process::id()
        );
        let cases = [
            // A path for an id, signed as such by the host itself.
            (
                escape.as_str(),
                escape.as_str(),
                "http://127.0.0.1:7878/api/agents/x",
                "[bad_agent_id]",
            ),
            // An id other than the one it signed.
            (
                "echo-1a2b3c4d",
                "echo-ffffffff",
                "http://127.0.0.1:7878/api/agents/echo-ffffffff",
                "[agent_id_mismatch]",
            ),
            // A URL that points at another machine (the metadata service).
            (
                "echo-1a2b3c4d",
                "echo-1a2b3c4d",
                "http://169.254.169.254/api/agents/echo-1a2b3c4d",
                "[bad_api_url]",
            ),
            // Terminal escapes in what the CLI would print.
            (
                "echo-1a2b3c4d",
                "echo-1a2b3c4d",
                "http://127.0.0.1:7878/api/agents/echo-1a2b3c4d\u{1b}[2J",
                "[bad_api_url]",
            ),
        ];
        for (signed, answered, url, code) in cases {
            let stderr = deploy_to(signed, answered, url, &d).await;
            assert!(
                stderr.contains(code),
                "{answered} / {url:?}: expected {code}, got {stderr}"
            );
        }
        assert!(
            !std::path::Path::new(&format!("/tmp/sparebox-escape-{}.json", std::process::id()))
                .exists(),
            "a file was written outside the agents dir"
        );
        let agents = d.home.path().join("data/sparebox/deployer/agents");
        let saved = std::fs::read_dir(&agents).map(|e| e.count()).unwrap_or(0);
        assert_eq!(saved, 0, "nothing is saved for a refused answer");
    })
    .await;
}
