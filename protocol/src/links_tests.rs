use super::*;
use crate::block::Block;

#[derive(serde::Serialize)]
struct Node {
    name: &'static str,
    children: Vec<Cid>,
    parent: Option<Cid>,
}

fn node(name: &'static str, children: Vec<Cid>, parent: Option<Cid>) -> Block {
    Block::encode(&Node {
        name,
        children,
        parent,
    })
    .unwrap()
}

#[test]
fn links_are_every_tag_42_in_order() {
    let leaf = Block::raw(b"leaf".to_vec());
    let other = Block::raw(b"other".to_vec());
    let parent = node("parent", vec![], None);
    let root = node("root", vec![leaf.cid(), other.cid()], Some(parent.cid()));
    assert_eq!(
        links(&root.cid(), root.bytes()).unwrap(),
        vec![leaf.cid(), other.cid(), parent.cid()]
    );
    assert_eq!(links(&leaf.cid(), leaf.bytes()).unwrap(), vec![]);
}

#[test]
fn reachable_walks_every_link_once_and_refuses_gaps_and_damage() {
    let leaf = Block::raw(b"leaf".to_vec());
    let parent = node("parent", vec![leaf.cid()], None);
    let root = node("root", vec![leaf.cid()], Some(parent.cid()));
    let unlinked = Block::raw(b"not linked".to_vec());
    let all = [&leaf, &parent, &root, &unlinked];
    let get = |cid: &Cid| {
        all.iter()
            .find(|b| b.cid() == *cid)
            .map(|b| b.bytes().to_vec())
    };
    let found: Vec<Cid> = reachable(root.cid(), get)
        .unwrap()
        .into_iter()
        .map(|(cid, _)| cid)
        .collect();
    assert_eq!(found, vec![root.cid(), leaf.cid(), parent.cid()]);

    let without_leaf = |cid: &Cid| (*cid != leaf.cid()).then(|| get(cid)).flatten();
    assert_eq!(
        reachable(root.cid(), without_leaf),
        Err(WalkError::Missing(leaf.cid().to_string()))
    );

    let damaged = |cid: &Cid| {
        let mut bytes = get(cid)?;
        if *cid == parent.cid() {
            bytes[3] ^= 1;
        }
        Some(bytes)
    };
    assert!(matches!(
        reachable(root.cid(), damaged),
        Err(WalkError::Invalid { cid, .. }) if cid == parent.cid().to_string()
    ));
}
