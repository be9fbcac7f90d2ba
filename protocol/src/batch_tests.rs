use super::*;
use crate::block::Block;

fn commitments(n: usize) -> Vec<Cid> {
    (0..n)
        .map(|i| Block::encode(&format!("commitment {i}")).unwrap().cid())
        .collect()
}

#[test]
fn every_leaf_of_every_size_proves_its_way_to_the_root() {
    for n in 2..=70 {
        let leaves = commitments(n);
        let tree = BatchTree::new(&leaves).unwrap();
        for (i, leaf) in leaves.iter().enumerate() {
            let proof = tree.inclusion(i).unwrap();
            assert_eq!(proof.root(leaf), Ok(tree.root()), "leaf {i} of {n}");
            // The proof is as short as the tree is deep.
            assert!(proof.path.len() <= (n as f64).log2().ceil() as usize);
        }
        assert!(tree.inclusion(n).is_none());
    }
}

#[test]
fn the_root_is_the_rfc_9162_hash_of_its_subtrees() {
    let leaves = commitments(3);
    let tree = BatchTree::new(&leaves).unwrap();
    let leaf = |c: &Cid| -> Hash { Sha256::digest([&[0u8][..], &c.to_bytes()].concat()).into() };
    let node = |l: &Hash, r: &Hash| -> Hash { Sha256::digest([&[1u8][..], l, r].concat()).into() };
    let expected = node(
        &node(&leaf(&leaves[0]), &leaf(&leaves[1])),
        &leaf(&leaves[2]),
    );
    assert_eq!(tree.root(), expected);
    assert_eq!(tree.message(), [BATCH_CONTEXT, &expected[..]].concat());
}

#[test]
fn a_proof_leads_elsewhere_for_another_commitment_or_position_or_a_changed_sibling() {
    let leaves = commitments(11);
    let tree = BatchTree::new(&leaves).unwrap();
    let proof = tree.inclusion(6).unwrap();
    assert_ne!(proof.root(&leaves[5]), Ok(tree.root()));
    let moved = Inclusion {
        index: 7,
        ..proof.clone()
    };
    assert_ne!(moved.root(&leaves[6]), Ok(tree.root()));
    let mut changed = proof.clone();
    changed.path[1][0] ^= 1;
    assert_ne!(changed.root(&leaves[6]), Ok(tree.root()));
}

#[test]
fn malformed_proofs_and_batches_are_refused() {
    let leaves = commitments(5);
    let tree = BatchTree::new(&leaves).unwrap();
    let proof = tree.inclusion(4).unwrap();
    let malformed = Err(BatchError::Proof {
        index: proof.index,
        leaves: proof.leaves,
    });
    let mut longer = proof.clone();
    longer.path.push(ByteBuf::from(vec![0; HASH_LEN]));
    assert_eq!(longer.root(&leaves[4]), malformed);
    let mut shorter = proof.clone();
    shorter.path.pop();
    assert_eq!(shorter.root(&leaves[4]), malformed);
    let mut short_hash = proof.clone();
    short_hash.path[0].pop();
    assert_eq!(short_hash.root(&leaves[4]), malformed);
    let outside = Inclusion {
        index: 5,
        ..proof.clone()
    };
    assert!(outside.root(&leaves[4]).is_err());
    let alone = Inclusion {
        index: 0,
        leaves: 1,
        path: Vec::new(),
    };
    assert!(alone.root(&leaves[0]).is_err());

    assert_eq!(
        BatchTree::new(&leaves[..1]).err(),
        Some(BatchError::Size(1))
    );
    assert_eq!(
        BatchTree::new(&commitments(MAX_BATCH + 1)).err(),
        Some(BatchError::Size(MAX_BATCH + 1))
    );
    let repeated = CustodyBatch {
        leaves: vec![
            BatchLeaf {
                order: "a".into(),
                commitment: leaves[0],
            },
            BatchLeaf {
                order: "b".into(),
                commitment: leaves[0],
            },
        ],
    };
    assert_eq!(
        repeated.check(),
        Err(BatchError::Repeated(leaves[0].to_string()))
    );
}
