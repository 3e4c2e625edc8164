//! A deployer's offer, signed with the node crate's protocol, is verified by
//! the marketplace crate's view of the same protocol against a live node's
//! identity: one set of wire types for every party.
#![allow(clippy::unwrap_used)] // test files: a failed unwrap is a failed test

use std::time::Duration;

use sparebox_protocol::identity::Keypair;
use sparebox_protocol::{
    Checks, DeploymentOffer, Digest, Envelope, Id, Payment, PriceTerms, ResourceRequest,
    RuntimeKind, now_secs, open,
};
use sparebox_tests::{spawn_node, within};

#[tokio::test]
async fn offer_addressed_to_a_live_node_verifies_only_for_that_node() {
    within(Duration::from_secs(30), async {
        let a = spawn_node().await.unwrap();
        let b = spawn_node().await.unwrap();
        let health: serde_json::Value = reqwest::get(format!("{}/api/health", a.api_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let host: sparebox_protocol::identity::PublicKey =
            health["peerId"].as_str().unwrap().parse().unwrap();
        assert_eq!(host, a.node.public_key());

        let deployer = Keypair::generate().unwrap();
        let now = now_secs();
        let offer = DeploymentOffer {
            version: 1,
            offer_id: Id::random().unwrap(),
            deployer: deployer.public(),
            host,
            issued_at: now,
            expires_at: now + 600,
            nonce: Id::random().unwrap(),
            spec_sha256: Digest([0; 32]),
            runtime: RuntimeKind::Wasi,
            resources: ResourceRequest::default(),
            price: PriceTerms::default(),
            payment: Payment::Direct,
        };
        let wire = Envelope::seal(&offer, &deployer).unwrap().to_bytes();
        let ok = open::<DeploymentOffer>(&wire, &Checks::now().with_audience(a.node.public_key()))
            .unwrap();
        assert_eq!(ok.message, offer);
        let err = open::<DeploymentOffer>(&wire, &Checks::now().with_audience(b.node.public_key()))
            .unwrap_err();
        assert_eq!(err.code(), "wrong_audience");

        a.node.shutdown().await.unwrap();
        b.node.shutdown().await.unwrap();
    })
    .await;
}
