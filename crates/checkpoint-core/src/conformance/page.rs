//! `list_page`: keyset pagination in both directions, cursors and filters.

use serde_json::json;

use super::{assert_invalid, checkpoint, fill, versions, Store};
use crate::validate::MAX_PAGE_LIMIT;
use crate::{Checkpoint, ListQuery};

/// Follows cursors from `query` to the end and returns every item in page order.
async fn walk(store: &Store, query: ListQuery) -> Vec<Checkpoint> {
    let mut all = Vec::new();
    let mut next = Some(query);
    let mut pages = 0;
    while let Some(query) = next {
        let page = store.list_page(&query).await.unwrap();
        assert!(
            page.items.len() <= query.limit,
            "page larger than its limit"
        );
        pages += 1;
        assert!(pages <= 1_000, "pagination does not terminate");
        next = query.next(&page);
        all.extend(page.items);
    }
    all
}

/// Saves checkpoints 1..=count where odd versions ran node `odd` and even `even`, and
/// metadata `parity` says which, plus `step`.
async fn fill_alternating(store: &Store, execution: &str, count: i64) {
    for v in 1..=count {
        let parity = if v % 2 == 0 { "even" } else { "odd" };
        let cp = checkpoint(execution, parity, json!(v))
            .with_metadata("parity", parity)
            .with_metadata("step", v)
            .with_metadata("tags", json!({"k": [v % 3]}));
        store.save(&cp).await.unwrap();
    }
}

/// The first ascending page holds the oldest versions and a cursor at its last item.
pub async fn page_ascending_first_page_has_cursor(store: Store) {
    let saved = fill(&store, "e1", 5).await;
    let page = store
        .list_page(&ListQuery::new("e1").limit(2))
        .await
        .unwrap();
    assert_eq!(page.items, saved[..2].to_vec());
    assert_eq!(page.next_cursor, Some(2));
}

/// Walking ascending pages visits every checkpoint once, in order.
pub async fn page_ascending_walks_every_checkpoint_once(store: Store) {
    let saved = fill(&store, "e1", 23).await;
    assert_eq!(walk(&store, ListQuery::new("e1").limit(5)).await, saved);
}

/// Walking descending pages visits every checkpoint once, newest first.
pub async fn page_descending_walks_every_checkpoint_once(store: Store) {
    let mut saved = fill(&store, "e1", 23).await;
    saved.reverse();
    let all = walk(&store, ListQuery::new("e1").limit(4).descending()).await;
    assert_eq!(all, saved);
}

/// `after_version` excludes the cursor itself.
pub async fn page_after_version_is_exclusive(store: Store) {
    fill(&store, "e1", 6).await;
    let page = store
        .list_page(&ListQuery::new("e1").after(3))
        .await
        .unwrap();
    assert_eq!(versions(&page.items), vec![4, 5, 6]);
    assert_eq!(page.next_cursor, None);
}

/// `before_version` excludes the cursor itself, and works in both directions.
pub async fn page_before_version_is_exclusive(store: Store) {
    fill(&store, "e1", 6).await;
    let asc = store
        .list_page(&ListQuery::new("e1").before(3))
        .await
        .unwrap();
    assert_eq!(versions(&asc.items), vec![1, 2]);
    let desc = store
        .list_page(&ListQuery::new("e1").before(4).descending())
        .await
        .unwrap();
    assert_eq!(versions(&desc.items), vec![3, 2, 1]);
}

/// Both cursors together give the window between them, paged within it.
pub async fn page_window_between_cursors(store: Store) {
    fill(&store, "e1", 10).await;
    let query = ListQuery::new("e1").after(2).before(9).limit(3);
    let page = store.list_page(&query).await.unwrap();
    assert_eq!(versions(&page.items), vec![3, 4, 5]);
    assert_eq!(page.next_cursor, Some(5));
    assert_eq!(versions(&walk(&store, query).await), vec![3, 4, 5, 6, 7, 8]);
    let desc = walk(
        &store,
        ListQuery::new("e1")
            .after(2)
            .before(9)
            .limit(3)
            .descending(),
    )
    .await;
    assert_eq!(versions(&desc), vec![8, 7, 6, 5, 4, 3]);
}

/// A window with no room in it (after ≥ before) is an empty page, not an error.
pub async fn page_empty_window_is_empty(store: Store) {
    fill(&store, "e1", 5).await;
    for (after, before) in [(3, 3), (4, 2), (3, 4)] {
        let page = store
            .list_page(&ListQuery::new("e1").after(after).before(before))
            .await
            .unwrap();
        assert!(page.items.is_empty(), "after {after} before {before}");
        assert_eq!(page.next_cursor, None);
    }
}

/// The last page, shorter than the limit, has no cursor.
pub async fn page_last_page_has_no_cursor(store: Store) {
    fill(&store, "e1", 5).await;
    let page = store
        .list_page(&ListQuery::new("e1").after(2).limit(10))
        .await
        .unwrap();
    assert_eq!(versions(&page.items), vec![3, 4, 5]);
    assert_eq!(page.next_cursor, None);
}

/// When the history is an exact multiple of the limit, the last full page has no cursor, so no
/// empty page is ever fetched.
pub async fn page_exact_multiple_ends_without_empty_page(store: Store) {
    fill(&store, "e1", 6).await;
    let first = store
        .list_page(&ListQuery::new("e1").limit(3))
        .await
        .unwrap();
    assert_eq!(first.next_cursor, Some(3));
    let second = store
        .list_page(&ListQuery::new("e1").limit(3).after(3))
        .await
        .unwrap();
    assert_eq!(versions(&second.items), vec![4, 5, 6]);
    assert_eq!(second.next_cursor, None);
}

/// `node_name` keeps only checkpoints of that node.
pub async fn page_filters_node_name(store: Store) {
    fill_alternating(&store, "e1", 9).await;
    let page = store
        .list_page(&ListQuery::new("e1").node("even"))
        .await
        .unwrap();
    assert_eq!(versions(&page.items), vec![2, 4, 6, 8]);
    assert!(page.items.iter().all(|cp| cp.node_name == "even"));
}

/// A metadata filter keeps checkpoints whose metadata has every given key with an equal value.
pub async fn page_filters_metadata_by_every_key(store: Store) {
    fill_alternating(&store, "e1", 9).await;
    let odd = store
        .list_page(&ListQuery::new("e1").metadata_eq("parity", "odd"))
        .await
        .unwrap();
    assert_eq!(versions(&odd.items), vec![1, 3, 5, 7, 9]);
    let both = store
        .list_page(
            &ListQuery::new("e1")
                .metadata_eq("parity", "odd")
                .metadata_eq("step", 5),
        )
        .await
        .unwrap();
    assert_eq!(versions(&both.items), vec![5]);
}

/// Values are compared whole: a nested object or array must be equal, not merely contain the
/// filter; numbers compare by value.
pub async fn page_metadata_filter_compares_whole_values(store: Store) {
    fill_alternating(&store, "e1", 6).await;
    let whole = store
        .list_page(&ListQuery::new("e1").metadata_eq("tags", json!({"k": [1]})))
        .await
        .unwrap();
    assert_eq!(versions(&whole.items), vec![1, 4]);
    let partial = store
        .list_page(&ListQuery::new("e1").metadata_eq("tags", json!({})))
        .await
        .unwrap();
    assert!(partial.items.is_empty(), "{:?}", versions(&partial.items));
    let float = store
        .list_page(&ListQuery::new("e1").metadata_eq("step", 2.0))
        .await
        .unwrap();
    assert_eq!(versions(&float.items), vec![2]);
}

/// A filter nothing matches gives an empty last page.
pub async fn page_metadata_filter_without_match_is_empty(store: Store) {
    fill_alternating(&store, "e1", 4).await;
    for query in [
        ListQuery::new("e1").metadata_eq("parity", "neither"),
        ListQuery::new("e1").metadata_eq("missing", json!(null)),
        ListQuery::new("e1").metadata_eq("step", "1"),
    ] {
        let page = store.list_page(&query).await.unwrap();
        assert!(page.items.is_empty(), "{query:?}");
        assert_eq!(page.next_cursor, None);
    }
}

/// Filters and cursors combine: pages of filtered items continue from the last item's version.
pub async fn page_filters_combine_with_cursors(store: Store) {
    fill_alternating(&store, "e1", 20).await;
    let query = ListQuery::new("e1").node("odd").limit(3);
    let first = store.list_page(&query).await.unwrap();
    assert_eq!(versions(&first.items), vec![1, 3, 5]);
    assert_eq!(first.next_cursor, Some(5));
    let all = walk(&store, query).await;
    assert_eq!(versions(&all), vec![1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
    let desc = walk(
        &store,
        ListQuery::new("e1")
            .metadata_eq("parity", "even")
            .limit(4)
            .descending(),
    )
    .await;
    assert_eq!(versions(&desc), vec![20, 18, 16, 14, 12, 10, 8, 6, 4, 2]);
}

/// A limit of 0 is refused.
pub async fn page_rejects_zero_limit(store: Store) {
    assert_invalid(
        store.list_page(&ListQuery::new("e1").limit(0)).await,
        "limit",
    );
}

/// A limit over the maximum is refused; the maximum itself is accepted.
pub async fn page_rejects_limit_over_maximum(store: Store) {
    assert_invalid(
        store
            .list_page(&ListQuery::new("e1").limit(MAX_PAGE_LIMIT + 1))
            .await,
        "limit",
    );
    assert!(store
        .list_page(&ListQuery::new("e1").limit(MAX_PAGE_LIMIT))
        .await
        .is_ok());
}

/// Negative cursors are refused.
pub async fn page_rejects_negative_cursor(store: Store) {
    assert_invalid(
        store.list_page(&ListQuery::new("e1").after(-1)).await,
        "after_version",
    );
    assert_invalid(
        store.list_page(&ListQuery::new("e1").before(-1)).await,
        "before_version",
    );
}

/// Paging an execution without checkpoints gives an empty last page.
pub async fn page_of_unknown_execution_is_empty(store: Store) {
    let page = store.list_page(&ListQuery::new("nobody")).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.next_cursor, None);
}

/// A page never holds another execution's checkpoints.
pub async fn page_isolates_executions(store: Store) {
    fill(&store, "a", 5).await;
    let b = fill(&store, "b", 5).await;
    let all = walk(&store, ListQuery::new("b").limit(2)).await;
    assert_eq!(all, b);
}
