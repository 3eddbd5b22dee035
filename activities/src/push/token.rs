//! The credential a push provider wants on every request (an APNs provider token, an FCM access
//! token), cached and shared by every send until it is due for refresh.
//!
//! One caller refreshes it while concurrent sends wait for that refresh rather than each making
//! their own. A send the provider answers with "this token is no good" drops it (unless another
//! send already replaced it) and tries once more with a fresh one; a second refusal stands.

use std::future::Future;
use std::sync::{Arc, RwLock};

use crate::outcome::SendOutcome;

/// Where a provider's tokens come from, and how long one may be used.
pub(crate) trait TokenSource {
    /// One token, as the client puts it on a request.
    type Token;

    /// The provider's name in logs (`APNs`, `FCM`).
    const PROVIDER: &'static str;

    /// Whether a cached token may still be used.
    fn fresh(&self, token: &Self::Token) -> bool;

    /// Signs or fetches a new token; the `Err` outcome is what the send comes to without one.
    fn issue(&self) -> impl Future<Output = Result<Self::Token, SendOutcome>> + Send;
}

/// What one request with a token came to.
pub(crate) enum Attempt {
    /// The provider answered; the token was not the problem.
    Answered(SendOutcome),
    /// The provider refused the token; carries what the send comes to if a fresh one is
    /// refused too.
    TokenRefused(SendOutcome),
}

/// The shared token of one client and its clones.
pub(crate) struct TokenCache<S: TokenSource> {
    source: S,
    current: RwLock<Option<Arc<S::Token>>>,
    /// Held by the one caller refreshing the token, so others wait instead of refreshing too.
    refreshing: tokio::sync::Mutex<()>,
}

impl<S: TokenSource> TokenCache<S> {
    /// An empty cache: the first send issues the first token.
    pub(crate) fn new(source: S) -> Self {
        Self {
            source,
            current: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Where the tokens come from.
    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    /// Runs `attempt` with the shared token; when the provider refuses it, forgets it and runs
    /// `attempt` once more with a fresh one.
    pub(crate) async fn send<F, Fut>(&self, attempt: F) -> SendOutcome
    where
        F: Fn(Arc<S::Token>) -> Fut,
        Fut: Future<Output = Attempt>,
    {
        let token = match self.get().await {
            Ok(token) => token,
            Err(outcome) => return outcome,
        };
        match attempt(token.clone()).await {
            Attempt::Answered(outcome) => return outcome,
            Attempt::TokenRefused(_) => self.forget(&token),
        }
        // Revoked, or expired earlier than it said: one fresh token, one more try.
        tracing::info!(
            provider = S::PROVIDER,
            "provider refused the shared token, refreshing"
        );
        let token = match self.get().await {
            Ok(token) => token,
            Err(outcome) => return outcome,
        };
        match attempt(token).await {
            Attempt::Answered(outcome) | Attempt::TokenRefused(outcome) => outcome,
        }
    }

    /// Returns the shared token, issuing a new one when there is none or it is due.
    async fn get(&self) -> Result<Arc<S::Token>, SendOutcome> {
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        let _refreshing = self.refreshing.lock().await;
        // Whoever held the lock before us may have refreshed it already.
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        let token = Arc::new(self.source.issue().await?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        Ok(token)
    }

    fn cached(&self) -> Option<Arc<S::Token>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|token| self.source.fresh(token))
            .cloned()
    }

    /// Drops `stale` if it is still the shared token, so concurrent sends that all saw it
    /// refused cause one refresh, not one each.
    fn forget(&self, stale: &Arc<S::Token>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current
            .as_ref()
            .is_some_and(|token| Arc::ptr_eq(token, stale))
        {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Numbered tokens, 1 first, that stay fresh.
    #[derive(Default)]
    struct Numbers {
        issued: AtomicU32,
    }

    impl TokenSource for Numbers {
        type Token = u32;

        const PROVIDER: &'static str = "test";

        fn fresh(&self, _token: &u32) -> bool {
            true
        }

        async fn issue(&self) -> Result<u32, SendOutcome> {
            // Lets the other sends reach the cache while this one refreshes.
            tokio::task::yield_now().await;
            Ok(self.issued.fetch_add(1, Ordering::SeqCst) + 1)
        }
    }

    fn accepted(token: u32) -> SendOutcome {
        SendOutcome::Accepted {
            provider_message_id: token.to_string(),
        }
    }

    fn refused() -> SendOutcome {
        SendOutcome::permanent("refused", "the fresh token was refused too")
    }

    #[tokio::test]
    async fn concurrent_sends_share_one_token_and_a_refusal_refreshes_it_once() {
        let cache = TokenCache::new(Numbers::default());
        let sends =
            (0..8).map(|_| cache.send(|token| async move { Attempt::Answered(accepted(*token)) }));
        let outcomes = futures::future::join_all(sends).await;
        assert!(outcomes.iter().all(|o| *o == accepted(1)), "{outcomes:?}");
        assert_eq!(cache.source().issued.load(Ordering::SeqCst), 1);

        let outcome = cache
            .send(|token| async move {
                match *token {
                    1 => Attempt::TokenRefused(refused()),
                    n => Attempt::Answered(accepted(n)),
                }
            })
            .await;
        assert_eq!(outcome, accepted(2));

        // Refused whatever the token: one refresh, then the second refusal stands.
        let outcome = cache
            .send(|_| async { Attempt::TokenRefused(refused()) })
            .await;
        assert_eq!(outcome, refused());
        assert_eq!(cache.source().issued.load(Ordering::SeqCst), 3);
    }
}
