//! Audience resolution: a recipients query becomes a paged snapshot in the store.

use fanout_domain::UserId;
use fanout_domain::contracts::{AudienceSnapshot, ResolveAudienceInput};
use fanout_domain::request::RecipientsQuery;
use fanout_store::Store;
use temporalio_sdk::activities::ActivityError;

use crate::store_error;

/// Splits the audience into pages of `page_size` and writes them. Deterministic for a given
/// query, so a retried resolution rewrites exactly the same snapshot.
pub async fn resolve(
    store: &Store,
    input: &ResolveAudienceInput,
    page_size: u32,
) -> Result<AudienceSnapshot, ActivityError> {
    let users: Vec<UserId> = match &input.recipients {
        RecipientsQuery::Users { user_ids } => {
            let mut ids = user_ids.clone();
            ids.sort();
            ids.dedup();
            ids
        }
        RecipientsQuery::Followers { .. } | RecipientsQuery::Segment { .. } => {
            return Err(crate::permanent(
                fanout_domain::contracts::ERR_INVALID_INPUT,
                "followers and segment audiences are not supported yet".into(),
            ));
        }
    };
    let pages = paginate(users, page_size);
    store
        .write_audience(&input.request_id, &pages)
        .await
        .map_err(store_error)?;
    let recipients = pages.iter().map(|p| p.len() as u64).sum();
    tracing::info!(
        request_id = %input.request_id,
        recipients,
        pages = pages.len(),
        "audience resolved"
    );
    Ok(AudienceSnapshot {
        recipients,
        pages: u32::try_from(pages.len()).unwrap_or(u32::MAX),
    })
}

/// Chunks users into pages of at most `page_size` (at least one per page).
fn paginate(users: Vec<UserId>, page_size: u32) -> Vec<Vec<UserId>> {
    let size = usize::try_from(page_size.max(1)).unwrap_or(usize::MAX);
    users.chunks(size).map(<[UserId]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(n: usize) -> Vec<UserId> {
        (0..n)
            .map(|i| UserId::parse(&format!("u{i:03}")).unwrap())
            .collect()
    }

    #[test]
    fn pages_are_full_but_the_last() {
        let pages = paginate(users(7), 3);
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
        assert!(paginate(Vec::new(), 3).is_empty());
        assert_eq!(paginate(users(2), 0).len(), 2);
    }
}
