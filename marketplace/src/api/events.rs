//! Live events for the signed-in account, over SSE.

use std::sync::Arc;

use axum::extract::State;
use serde_json::json;

use super::extract::SignedIn;
use crate::ledger::Account as LedgerAccount;
use crate::state::AppState;

/// Server-Sent Events for the signed-in account: `deployment` when one of
/// its agents changes, `balance` when its credit or reservations change
/// (checked every 2 s, so a webhook's credit shows up without a reload).
pub(super) async fn events(
    State(s): State<Arc<AppState>>,
    signed: SignedIn,
) -> axum::response::sse::Sse<
    impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::{Event as Sse, KeepAlive};
    let SignedIn(_, a) = signed;
    let rx = s.deployments.subscribe();
    let tick = tokio::time::interval(std::time::Duration::from_secs(2));
    let state = (s, a.id, rx, tick, None::<(i64, i64)>);
    let stream = futures::stream::unfold(
        state,
        |(s, account, mut rx, mut tick, last)| async move {
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Ok(e) if e.account == account => {
                            let ev = Sse::default().event(e.kind).data(e.data.to_string());
                            return Some((Ok(ev), (s, account, rx, tick, last)));
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = tick.tick() => {
                        let balance = s.ledger.balance(&LedgerAccount::Credit(account.clone())).unwrap_or(0);
                        let reserved: i64 = s
                            .vouchers
                            .for_account(&account)
                            .iter()
                            .map(|v| s.ledger.balance(&LedgerAccount::Reserved(v.voucher_id.clone())).unwrap_or(0))
                            .sum();
                        if last != Some((balance, reserved)) {
                            let ev = Sse::default()
                                .event("balance")
                                .data(json!({"balanceCents": balance, "reservedCents": reserved}).to_string());
                            return Some((Ok(ev), (s, account, rx, tick, Some((balance, reserved)))));
                        }
                    }
                }
            }
        },
    );
    axum::response::sse::Sse::new(stream).keep_alive(KeepAlive::default())
}
