//! Release policies written with node names where identity CIDs go (`members = ["node-1"]`),
//! as scenarios and `dta bench custody --policy` take them: which names a policy uses, and the
//! policy with each name replaced by that node's identity.
//!
//! What it does not do: judge the policy. The node checks it once the names are identities.

use serde_json::Value;

/// Who a policy names: its approver groups' members and its veto group's, each name once, in
/// the order they first appear.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Members {
    /// Members of the approver groups.
    pub approvers: Vec<String>,
    /// Members of the veto group.
    pub vetoers: Vec<String>,
}

/// The member lists of the approver groups and of the veto group (that one last).
fn member_lists(policy: &mut Value) -> Result<Vec<(bool, &mut Vec<Value>)>, String> {
    let fields = policy.as_object_mut().ok_or("a policy is a table")?;
    let mut lists = Vec::new();
    for (key, value) in fields.iter_mut() {
        match (key.as_str(), value) {
            ("groups", Value::Array(groups)) => {
                for group in groups {
                    if let Some(members) = group.get_mut("members").and_then(Value::as_array_mut) {
                        lists.push((false, members));
                    }
                }
            }
            ("veto", group) => {
                if let Some(members) = group.get_mut("members").and_then(Value::as_array_mut) {
                    lists.push((true, members));
                }
            }
            _ => {}
        }
    }
    Ok(lists)
}

/// The names a policy gives as members.
pub fn members(policy: &Value) -> Result<Members, String> {
    let mut policy = policy.clone();
    let mut found = Members::default();
    for (veto, list) in member_lists(&mut policy)? {
        let names = if veto {
            &mut found.vetoers
        } else {
            &mut found.approvers
        };
        for member in list.iter() {
            let name = member.as_str().ok_or("a member is not a node name")?;
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    Ok(found)
}

/// The policy with each member's name replaced by the identity `identity_of` gives for it.
pub fn with_identities(
    mut policy: Value,
    identity_of: impl Fn(&str) -> Result<String, String>,
) -> Result<Value, String> {
    for (_, list) in member_lists(&mut policy)? {
        for member in list.iter_mut() {
            let name = member.as_str().ok_or("a member is not a node name")?;
            *member = Value::String(identity_of(name)?);
        }
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn example() -> Value {
        json!({
            "delay_ms": 3000,
            "groups": [
                {"name": "legal", "members": ["node-4"], "count": 1},
                {"name": "ops", "members": ["node-1", "node-2", "node-4"], "count": 2},
            ],
            "veto": {"name": "board", "members": ["node-1", "node-5"], "count": 2},
        })
    }

    #[test]
    fn members_are_listed_once_by_part() {
        let found = members(&example()).expect("members");
        assert_eq!(found.approvers, ["node-4", "node-1", "node-2"]);
        assert_eq!(found.vetoers, ["node-1", "node-5"]);
    }

    #[test]
    fn names_become_identities_and_nothing_else_changes() {
        let replaced =
            with_identities(example(), |name| Ok(format!("id-of-{name}"))).expect("replaced");
        assert_eq!(replaced["groups"][1]["members"][2], "id-of-node-4");
        assert_eq!(replaced["veto"]["members"][1], "id-of-node-5");
        assert_eq!(replaced["delay_ms"], 3000);
        assert_eq!(replaced["groups"][0]["name"], "legal");
    }

    #[test]
    fn an_unknown_name_or_a_non_table_is_an_error() {
        let unknown = with_identities(example(), |name| Err(format!("no node {name:?}")));
        assert_eq!(unknown.unwrap_err(), "no node \"node-4\"");
        assert!(members(&json!([1, 2])).is_err());
        let numeric = json!({"groups": [{"name": "g", "members": [7], "count": 1}]});
        assert!(members(&numeric).is_err());
    }
}
