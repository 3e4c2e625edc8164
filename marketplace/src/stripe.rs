//! Stripe billing through async-stripe: Checkout Sessions for credit,
//! Connect Express accounts with account-link onboarding, and transfers
//! with idempotency keys. Webhooks are verified with async-stripe on the
//! raw body (tolerance 300 s) in [`verify_webhook`].
//!
//! Keys come only from the environment: `STRIPE_SECRET_KEY` and
//! `STRIPE_WEBHOOK_SECRET`. `STRIPE_API_BASE` changes the API base URL
//! (tests point it at the in-repo fake Stripe on 127.0.0.1).

use std::collections::HashMap;

use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    ProductData,
};
use stripe_connect::account::{
    CreateAccount, CreateAccountCapabilities, CreateAccountCapabilitiesTransfers, CreateAccountType,
};
use stripe_connect::account_link::{CreateAccountLink, CreateAccountLinkType};
use stripe_connect::transfer::CreateTransfer;
use stripe_types::Currency;

use crate::billing::{Billing, BillingError, Checkout, Connected, Return};

/// Stripe settings, from the environment.
#[derive(Clone)]
pub struct StripeConfig {
    pub secret_key: String,
    pub webhook_secret: String,
    /// `None` for Stripe itself.
    pub api_base: Option<String>,
    pub currency: String,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("api_base", &self.api_base)
            .field("currency", &self.currency)
            .finish_non_exhaustive()
    }
}

impl StripeConfig {
    /// Reads `STRIPE_SECRET_KEY`, `STRIPE_WEBHOOK_SECRET` and the optional
    /// `STRIPE_API_BASE`.
    pub fn from_env() -> anyhow::Result<StripeConfig> {
        let need = |name: &str| {
            std::env::var(name).map_err(|_| {
                anyhow::anyhow!(
                    "--billing stripe needs {name} in the environment (or run --billing test-ledger)"
                )
            })
        };
        Ok(StripeConfig {
            secret_key: need("STRIPE_SECRET_KEY")?,
            webhook_secret: need("STRIPE_WEBHOOK_SECRET")?,
            api_base: std::env::var("STRIPE_API_BASE")
                .ok()
                .filter(|s| !s.is_empty()),
            currency: "usd".into(),
        })
    }
}

/// [`Billing`] with Stripe.
#[derive(Clone)]
pub struct StripeBilling {
    client: Client,
    currency: Currency,
}

impl std::fmt::Debug for StripeBilling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeBilling").finish_non_exhaustive()
    }
}

fn provider(e: impl std::fmt::Display) -> BillingError {
    BillingError::Provider(e.to_string())
}

fn idempotent(key: &str) -> Result<RequestStrategy, BillingError> {
    Ok(RequestStrategy::Idempotent(
        IdempotencyKey::new(key).map_err(|e| provider(format!("idempotency key: {e:?}")))?,
    ))
}

impl StripeBilling {
    pub fn new(cfg: &StripeConfig) -> Result<StripeBilling, BillingError> {
        // Several TLS crypto providers are linked (ring for async-stripe,
        // aws-lc-rs elsewhere), so rustls cannot pick one itself; name it.
        // An error only means one was installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = ClientBuilder::new(cfg.secret_key.as_str());
        if let Some(base) = &cfg.api_base {
            b = b.url(base.trim_end_matches('/'));
        }
        let currency = cfg
            .currency
            .parse::<Currency>()
            .map_err(|_| provider(format!("unknown currency {}", cfg.currency)))?;
        Ok(StripeBilling {
            client: b.build().map_err(provider)?,
            currency,
        })
    }
}

#[async_trait::async_trait]
impl Billing for StripeBilling {
    async fn checkout(
        &self,
        account: &str,
        cents: u64,
        back: &Return,
    ) -> Result<Checkout, BillingError> {
        let amount = i64::try_from(cents).map_err(|_| provider("amount too large"))?;
        let mut product = ProductData::new("Sparebox credit");
        product.description = Some("Prepaid credit for running agents on Sparebox hosts".into());
        let mut price = CreateCheckoutSessionLineItemsPriceData::new(self.currency.clone());
        price.unit_amount = Some(amount);
        price.product_data = Some(product);
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price_data = Some(price);
        item.quantity = Some(1);
        let metadata = HashMap::from([("sparebox_account".to_string(), account.to_string())]);
        // One key per attempt: a retried request after a timeout returns the
        // same session instead of opening a second one.
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(provider)?;
        let session = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Payment)
            .line_items(vec![item])
            .success_url(back.success_url.as_str())
            .cancel_url(back.cancel_url.as_str())
            .client_reference_id(account)
            .metadata(metadata)
            .customize()
            .request_strategy(idempotent(&format!(
                "checkout-{account}-{}",
                hex::encode(nonce)
            ))?)
            .send(&self.client)
            .await
            .map_err(provider)?;
        Ok(Checkout {
            id: session.id.to_string(),
            url: session
                .url
                .ok_or_else(|| provider("Stripe returned a session without a URL"))?,
        })
    }

    async fn connect_account(&self, email: &str) -> Result<Connected, BillingError> {
        let mut caps = CreateAccountCapabilities::new();
        caps.transfers = Some(CreateAccountCapabilitiesTransfers {
            requested: Some(true),
        });
        let a = CreateAccount::new()
            .type_(CreateAccountType::Express)
            .email(email)
            .capabilities(caps)
            .send(&self.client)
            .await
            .map_err(provider)?;
        Ok(Connected {
            id: a.id.to_string(),
            payouts_enabled: a.payouts_enabled.unwrap_or(false),
        })
    }

    async fn onboarding_link(
        &self,
        connected: &str,
        back: &Return,
    ) -> Result<String, BillingError> {
        let link = CreateAccountLink::new(connected, CreateAccountLinkType::AccountOnboarding)
            .refresh_url(back.cancel_url.as_str())
            .return_url(back.success_url.as_str())
            .send(&self.client)
            .await
            .map_err(provider)?;
        Ok(link.url)
    }

    async fn transfer(
        &self,
        destination: &str,
        cents: u64,
        idempotency_key: &str,
    ) -> Result<String, BillingError> {
        let amount = i64::try_from(cents).map_err(|_| provider("amount too large"))?;
        let metadata =
            HashMap::from([("sparebox_payout".to_string(), idempotency_key.to_string())]);
        let t = CreateTransfer::new(self.currency.clone(), destination)
            .amount(amount)
            .metadata(metadata)
            .customize()
            .request_strategy(idempotent(idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(provider)?;
        Ok(t.id.to_string())
    }
}

/// A verified webhook event, reduced to what the marketplace acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    pub id: String,
    pub created: i64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `checkout.session.completed`.
    CheckoutCompleted {
        session: String,
        account: Option<String>,
        paid: bool,
        amount_total: Option<i64>,
        payment_intent: Option<String>,
    },
    /// `charge.refunded`: `amount_refunded` is the charge's running total.
    ChargeRefunded {
        charge: String,
        payment_intent: Option<String>,
        amount_refunded: i64,
    },
    /// `account.updated`.
    AccountUpdated {
        account: String,
        payouts_enabled: bool,
    },
    /// Anything else (acknowledged, not acted on).
    Other(String),
}

/// Why a webhook was refused; `code()` is stable.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing Stripe-Signature header")]
    NoSignature,
    #[error("the signature does not match the payload and the webhook secret")]
    BadSignature,
    #[error("the signature's timestamp is more than 300 s from now")]
    Stale,
    #[error("bad Stripe-Signature header")]
    BadHeader,
    #[error("the event could not be parsed: {0}")]
    BadEvent(String),
}

impl WebhookError {
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::NoSignature => "no_signature",
            WebhookError::BadSignature => "bad_signature",
            WebhookError::Stale => "stale_timestamp",
            WebhookError::BadHeader => "bad_signature_header",
            WebhookError::BadEvent(_) => "bad_event",
        }
    }
}

/// Verifies `payload` (the raw body) against its `Stripe-Signature` header
/// with async-stripe, which allows 300 s of clock difference.
pub fn verify_webhook(
    payload: &str,
    signature: Option<&str>,
    secret: &str,
) -> Result<StripeEvent, WebhookError> {
    use stripe_webhook::{EventObject, Webhook, WebhookError as E};
    let sig = signature.ok_or(WebhookError::NoSignature)?;
    let event = Webhook::construct_event(payload, sig, secret).map_err(|e| match e {
        E::BadSignature | E::BadKey => WebhookError::BadSignature,
        E::BadTimestamp(_) => WebhookError::Stale,
        E::BadHeader(_) => WebhookError::BadHeader,
        E::BadParse(m) => WebhookError::BadEvent(m),
    })?;
    let kind = match event.data.object {
        EventObject::CheckoutSessionCompleted(s) => EventKind::CheckoutCompleted {
            session: s.id.to_string(),
            account: s.client_reference_id.clone().or_else(|| {
                s.metadata
                    .as_ref()
                    .and_then(|m| m.get("sparebox_account").cloned())
            }),
            paid: s.payment_status.as_str() == "paid",
            amount_total: s.amount_total,
            payment_intent: s.payment_intent.as_ref().map(|p| p.id().to_string()),
        },
        EventObject::ChargeRefunded(c) => EventKind::ChargeRefunded {
            charge: c.id.to_string(),
            payment_intent: c.payment_intent.as_ref().map(|p| p.id().to_string()),
            amount_refunded: c.amount_refunded,
        },
        EventObject::AccountUpdated(a) => EventKind::AccountUpdated {
            account: a.id.to_string(),
            payouts_enabled: a.payouts_enabled.unwrap_or(false),
        },
        _ => EventKind::Other(event.type_.as_str().to_string()),
    };
    Ok(StripeEvent {
        id: event.id.as_str().to_string(),
        created: event.created,
        kind,
    })
}
