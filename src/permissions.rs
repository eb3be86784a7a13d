//! The permission algebra: roles from the conf, a credential's effective permissions
//! (role ∩ narrowing list) and what a route requires that they lack.
//!
//! Pure code. Roles are ordered lowest to highest; `*` in a role grants every permission.
//! The *known* permissions are those any role names plus the conf's top-level `permissions:`
//! list; a route or a credential naming anything else is a typo and is refused.

use http::HeaderValue;
use std::collections::{BTreeSet, HashMap};

/// What one role grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grants {
    /// `*`: every permission.
    All,
    /// Exactly these permissions.
    Some(BTreeSet<String>),
}

/// One role from the conf.
#[derive(Debug, Clone)]
pub struct Role {
    /// The role's name, as stored in memberships and API key records.
    pub name: String,
    /// What it grants.
    pub grants: Grants,
    /// The name as an identity header value, made once.
    name_value: HeaderValue,
    /// What it grants, listed as the permissions header value (`*` expanded), made once.
    listed_value: HeaderValue,
}

/// Why the `roles:`/`permissions:` part of a conf is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolesError {
    /// No role at all.
    #[error("at least one role is required")]
    Empty,
    /// Two roles share a name.
    #[error("role {0:?} is defined twice")]
    DuplicateRole(String),
    /// A role name that is not a plain identifier.
    #[error("role name {0:?} must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'")]
    BadRoleName(String),
    /// A permission string not of the form `resource:action`.
    #[error("permission {0:?} must look like resource:action (letters, digits, '_', '-', '.')")]
    BadPermission(String),
}

/// The role table, in the conf's order (lowest first).
#[derive(Debug, Clone)]
pub struct Roles {
    ordered: Vec<Role>,
    /// Name → position. foldhash, not SipHash: the names come from the conf, not from
    /// clients, and a warm request looks a role up twice.
    rank: HashMap<String, usize, foldhash::fast::RandomState>,
    known: BTreeSet<String>,
    /// Every known permission as the permissions header value.
    all_value: HeaderValue,
}

/// A credential's effective permissions on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effective<'a> {
    /// Every permission (a `*` role with no narrowing list).
    All,
    /// Exactly the role's own set (no narrowing list): borrowed, nothing copied.
    Role(&'a BTreeSet<String>),
    /// Exactly these (a narrowing list applied).
    Some(BTreeSet<String>),
}

impl Roles {
    /// Builds the role table from `(name, permissions)` pairs and the extra known permissions.
    ///
    /// # Errors
    /// [`RolesError`] for an empty table, a duplicate or malformed name, or a malformed permission.
    pub fn new(roles: Vec<(String, Vec<String>)>, extra: Vec<String>) -> Result<Roles, RolesError> {
        if roles.is_empty() {
            return Err(RolesError::Empty);
        }
        let mut ordered = Vec::with_capacity(roles.len());
        let mut rank = HashMap::default();
        let mut known = BTreeSet::new();
        for (name, permissions) in roles {
            if !is_identifier(&name) {
                return Err(RolesError::BadRoleName(name));
            }
            if rank.insert(name.clone(), ordered.len()).is_some() {
                return Err(RolesError::DuplicateRole(name));
            }
            let mut set = BTreeSet::new();
            let mut all = false;
            for permission in permissions {
                if permission == "*" {
                    all = true;
                } else if is_permission(&permission) {
                    known.insert(permission.clone());
                    set.insert(permission);
                } else {
                    return Err(RolesError::BadPermission(permission));
                }
            }
            let grants = if all { Grants::All } else { Grants::Some(set) };
            let name_value =
                HeaderValue::from_str(&name).map_err(|_| RolesError::BadRoleName(name.clone()))?;
            ordered.push(Role {
                name,
                grants,
                name_value,
                listed_value: HeaderValue::from_static(""),
            });
        }
        for permission in extra {
            if !is_permission(&permission) {
                return Err(RolesError::BadPermission(permission));
            }
            known.insert(permission);
        }
        let all_value = joined(&known)?;
        for role in &mut ordered {
            role.listed_value = match &role.grants {
                Grants::All => all_value.clone(),
                Grants::Some(set) => joined(set)?,
            };
        }
        Ok(Roles {
            ordered,
            rank,
            known,
            all_value,
        })
    }

    /// The role called `name`, if the conf defines it.
    pub fn get(&self, name: &str) -> Option<&Role> {
        self.rank.get(name).map(|&i| &self.ordered[i])
    }

    /// Position of `name` in the order (0 = lowest), if defined.
    pub fn rank(&self, name: &str) -> Option<usize> {
        self.rank.get(name).copied()
    }

    /// Whether `permission` is a known permission string.
    pub fn is_known(&self, permission: &str) -> bool {
        self.known.contains(permission)
    }

    /// The first of `permissions` that is not known, if any.
    pub fn first_unknown<'a>(&self, permissions: &'a [String]) -> Option<&'a String> {
        permissions.iter().find(|p| !self.is_known(p))
    }

    /// Every known permission, sorted.
    pub fn known(&self) -> &BTreeSet<String> {
        &self.known
    }

    /// Role names, lowest first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.ordered.iter().map(|r| r.name.as_str())
    }

    /// Effective permissions of a credential acting with `role` and an optional narrowing list.
    /// A role the conf no longer defines grants nothing.
    pub fn effective(&self, role: &str, narrowing: Option<&[String]>) -> Effective<'_> {
        match self.get(role) {
            Some(role) => self.effective_of(role, narrowing),
            None => Effective::Some(BTreeSet::new()),
        }
    }

    /// [`Roles::effective`] for a role already looked up (the request path looks it up once).
    pub fn effective_of<'a>(
        &'a self,
        role: &'a Role,
        narrowing: Option<&[String]>,
    ) -> Effective<'a> {
        match (&role.grants, narrowing) {
            (Grants::All, None) => Effective::All,
            (Grants::All, Some(list)) => Effective::Some(list.iter().cloned().collect()),
            (Grants::Some(set), None) => Effective::Role(set),
            (Grants::Some(set), Some(list)) => {
                Effective::Some(list.iter().filter(|p| set.contains(*p)).cloned().collect())
            }
        }
    }

    /// The sorted permission list sent upstream: `*` expands to every known permission.
    pub fn listed(&self, effective: &Effective) -> Vec<String> {
        match effective {
            Effective::All => self.known.iter().cloned().collect(),
            Effective::Role(set) => set.iter().cloned().collect(),
            Effective::Some(set) => set.iter().cloned().collect(),
        }
    }

    /// The identity header values of `role` (a conf role, looked up once by the caller) with
    /// `effective` permissions: its name and the sorted, space-separated list. Without
    /// narrowing they are the values made when the conf was loaded (no allocation); a narrowed
    /// list is built here. `None` if a narrowing list read from Redis is not a valid header
    /// value.
    pub fn header_values(
        &self,
        role: &Role,
        effective: &Effective,
    ) -> Option<(HeaderValue, HeaderValue)> {
        let listed = match effective {
            Effective::All => self.all_value.clone(),
            Effective::Role(_) => role.listed_value.clone(),
            Effective::Some(set) => joined(set).ok()?,
        };
        Some((role.name_value.clone(), listed))
    }
}

/// `permissions` sorted and space-separated, as a header value.
fn joined(permissions: &BTreeSet<String>) -> Result<HeaderValue, RolesError> {
    let text = permissions
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    HeaderValue::from_str(&text).map_err(|_| RolesError::BadPermission(text))
}

impl Effective<'_> {
    /// Whether this grants `permission`.
    pub fn grants(&self, permission: &str) -> bool {
        match self {
            Effective::All => true,
            Effective::Role(set) => set.contains(permission),
            Effective::Some(set) => set.contains(permission),
        }
    }

    /// The permissions of `required` this lacks, in the order given.
    pub fn missing(&self, required: &[String]) -> Vec<String> {
        required
            .iter()
            .filter(|p| !self.grants(p))
            .cloned()
            .collect()
    }
}

/// `resource:action`: two non-empty parts of letters, digits, `_`, `-` or `.`.
pub fn is_permission(s: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 64
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    match s.split_once(':') {
        Some((resource, action)) => part(resource) && part(action),
        None => false,
    }
}

/// A plain identifier: 1-64 characters of letters, digits, `_` or `-`.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn sample() -> Roles {
        Roles::new(
            vec![
                ("viewer".into(), strings(&["repos:read"])),
                ("member".into(), strings(&["repos:read", "repos:write"])),
                ("admin".into(), strings(&["*"])),
            ],
            strings(&["billing:read"]),
        )
        .expect("valid roles")
    }

    #[test]
    fn header_values_match_the_listing_for_every_kind_of_grant() {
        let roles = sample();
        let narrowing = strings(&["repos:write", "billing:read"]);
        for (role, narrowing) in [
            ("viewer", None),
            ("admin", None),
            ("member", Some(&narrowing[..])),
            ("admin", Some(&narrowing[..])),
        ] {
            let defined = roles.get(role).expect("a conf role");
            let effective = roles.effective_of(defined, narrowing);
            let (name, listed) = roles
                .header_values(defined, &effective)
                .expect("valid values");
            assert_eq!(name, role);
            assert_eq!(
                listed,
                roles.listed(&effective).join(" ").as_str(),
                "{role}"
            );
        }
        let admin = roles.get("admin").expect("a conf role");
        let all = roles.effective_of(admin, None);
        assert_eq!(
            roles.header_values(admin, &all).map(|v| v.1),
            Some(HeaderValue::from_static(
                "billing:read repos:read repos:write"
            ))
        );
        let mut odd = BTreeSet::new();
        odd.insert("bad\nvalue".to_string());
        assert_eq!(roles.header_values(admin, &Effective::Some(odd)), None);
    }

    #[test]
    fn roles_are_ranked_in_conf_order() {
        let roles = sample();
        assert_eq!(roles.rank("viewer"), Some(0));
        assert_eq!(roles.rank("admin"), Some(2));
        assert_eq!(roles.rank("owner"), None);
    }

    #[test]
    fn known_permissions_come_from_roles_and_the_extra_list() {
        let roles = sample();
        assert!(roles.is_known("repos:write"));
        assert!(roles.is_known("billing:read"));
        assert!(!roles.is_known("repo:read"));
        assert!(!roles.is_known("*"));
        assert_eq!(
            roles.first_unknown(&strings(&["repos:read", "repo:read"])),
            Some(&"repo:read".to_string())
        );
    }

    #[test]
    fn effective_is_role_intersected_with_narrowing() {
        let roles = sample();
        let narrowing = strings(&["repos:read", "billing:read"]);
        assert_eq!(
            roles.effective("member", Some(&narrowing)),
            Effective::Some(["repos:read".to_string()].into())
        );
        assert_eq!(roles.effective("admin", None), Effective::All);
        assert_eq!(
            roles.effective("admin", Some(&narrowing)),
            Effective::Some(narrowing.iter().cloned().collect())
        );
    }

    #[test]
    fn an_undefined_role_grants_nothing() {
        let roles = sample();
        let effective = roles.effective("owner", None);
        assert_eq!(
            effective.missing(&strings(&["repos:read"])),
            strings(&["repos:read"])
        );
    }

    #[test]
    fn missing_lists_what_the_route_requires_and_is_not_granted() {
        let roles = sample();
        let viewer = roles.effective("viewer", None);
        assert_eq!(
            viewer.missing(&strings(&["repos:read", "repos:write"])),
            strings(&["repos:write"])
        );
        assert!(roles
            .effective("admin", None)
            .missing(&strings(&["billing:read"]))
            .is_empty());
    }

    #[test]
    fn star_is_listed_as_every_known_permission() {
        let roles = sample();
        assert_eq!(
            roles.listed(&Effective::All),
            strings(&["billing:read", "repos:read", "repos:write"])
        );
    }

    #[test]
    fn malformed_tables_are_refused() {
        assert_eq!(Roles::new(vec![], vec![]).err(), Some(RolesError::Empty));
        let dup = vec![("a".into(), vec![]), ("a".into(), vec![])];
        assert_eq!(
            Roles::new(dup, vec![]).err(),
            Some(RolesError::DuplicateRole("a".into()))
        );
        let bad = vec![("a".into(), strings(&["repos"]))];
        assert_eq!(
            Roles::new(bad, vec![]).err(),
            Some(RolesError::BadPermission("repos".into()))
        );
        let bad_name = vec![("a b".into(), vec![])];
        assert!(matches!(
            Roles::new(bad_name, vec![]),
            Err(RolesError::BadRoleName(_))
        ));
    }

    #[test]
    fn permission_syntax() {
        assert!(is_permission("repos:read"));
        assert!(is_permission("billing.v2:read-all"));
        for bad in ["repos", ":read", "repos:", "a:b:c", "re pos:read", "*"] {
            assert!(!is_permission(bad), "{bad}");
        }
    }
}
