//! Kafka's ACL model and `StandardAuthorizer` rules (KIP-801), sans-IO:
//! given the ACLs of the metadata image, the super users and
//! `allow.everyone.if.no.acl.found`, [`Authorizer::authorize`] says whether a
//! principal from a host may do an operation on a resource. Nothing here
//! knows about sockets, clocks or requests.
//!
//! The rules, as Kafka applies them:
//! 1. A super user (`super.users=User:admin;User:ops`) may do everything.
//! 2. The ACLs that apply to a resource are those of its type whose pattern
//!    matches its name: LITERAL with the same name, LITERAL `*`, or
//!    PREFIXED with a prefix of the name.
//! 3. Of those, an ACL counts when its principal is the client's or
//!    `User:*`, its host the client's address or `*`, and its operation
//!    the one asked, or ALL, or (ALLOW ACLs only) one that implies it:
//!    READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies
//!    DESCRIBE_CONFIGS.
//! 4. A DENY that counts wins; else an ALLOW that counts allows; else, when
//!    the resource has no ACL at all (for anyone), the default
//!    (`allow.everyone.if.no.acl.found`, false unless set); else denied.

use std::collections::BTreeSet;

use fjord_metadata::AclEntry;

use super::KafkaPrincipal;

/// Kafka's `ResourceType` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
    DelegationToken = 6,
    User = 7,
}

/// `ResourceType` filter codes besides the types themselves.
pub const RESOURCE_ANY: i8 = 1;

impl ResourceType {
    pub fn from_code(code: i8) -> Option<ResourceType> {
        use ResourceType::*;
        [
            Topic,
            Group,
            Cluster,
            TransactionalId,
            DelegationToken,
            User,
        ]
        .into_iter()
        .find(|t| *t as i8 == code)
    }
}

/// The name of the one CLUSTER resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The LITERAL name that matches every resource of its type, and the host
/// that matches every host.
pub const WILDCARD: &str = "*";
/// The principal that matches every principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Kafka's `PatternType` codes.
pub const PATTERN_ANY: i8 = 1;
pub const PATTERN_MATCH: i8 = 2;
pub const PATTERN_LITERAL: i8 = 3;
pub const PATTERN_PREFIXED: i8 = 4;

/// Kafka's `AclPermissionType` codes.
pub const PERMISSION_ANY: i8 = 1;
pub const PERMISSION_DENY: i8 = 2;
pub const PERMISSION_ALLOW: i8 = 3;

/// Kafka's `AclOperation` codes (ANY, 1, is a filter value only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
    TwoPhaseCommit = 15,
}

pub const OPERATION_ANY: i8 = 1;

impl Operation {
    pub fn from_code(code: i8) -> Option<Operation> {
        use Operation::*;
        [
            All,
            Read,
            Write,
            Create,
            Delete,
            Alter,
            Describe,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            CreateTokens,
            DescribeTokens,
            TwoPhaseCommit,
        ]
        .into_iter()
        .find(|o| *o as i8 == code)
    }

    /// Whether an ALLOW ACL for `self` allows `asked` (rule 3).
    fn allows(self, asked: Operation) -> bool {
        use Operation::*;
        self == All
            || self == asked
            || (asked == Describe && matches!(self, Read | Write | Delete | Alter))
            || (asked == DescribeConfigs && self == AlterConfigs)
    }
}

/// Whether `acl`'s resource pattern covers resource `name` of its type (rule 2).
pub fn pattern_matches(acl: &AclEntry, name: &str) -> bool {
    match acl.pattern_type {
        PATTERN_LITERAL => acl.resource_name == name || acl.resource_name == WILDCARD,
        PATTERN_PREFIXED => name.starts_with(&acl.resource_name),
        _ => false,
    }
}

/// The authorizer's settings: `super.users` and `allow.everyone.if.no.acl.found`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    /// Principals as Kafka writes them (`User:admin`).
    pub super_users: BTreeSet<String>,
    pub allow_if_no_acl: bool,
}

impl AuthorizerConfig {
    /// `super.users`: principals separated by `;`.
    pub fn parse_super_users(value: &str) -> BTreeSet<String> {
        value
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    }
}

/// One authorization question.
#[derive(Clone, Copy, Debug)]
pub struct Action<'a> {
    pub resource_type: ResourceType,
    pub name: &'a str,
    pub operation: Operation,
}

/// The rules over a set of ACLs.
pub struct Authorizer<'a, I> {
    pub config: &'a AuthorizerConfig,
    pub acls: I,
}

impl<'a, I> Authorizer<'a, I>
where
    I: Iterator<Item = &'a AclEntry> + Clone,
{
    /// Whether `principal`, connected from `host`, may do `action`.
    pub fn authorize(&self, principal: &KafkaPrincipal, host: &str, action: Action<'_>) -> bool {
        let who = principal.to_string();
        if self.config.super_users.contains(&who) {
            return true;
        }
        let mut has_resource_acls = false;
        let mut allowed = false;
        for acl in self.acls.clone() {
            if acl.resource_type != action.resource_type as i8 || !pattern_matches(acl, action.name)
            {
                continue;
            }
            has_resource_acls = true;
            if acl.principal != who && acl.principal != WILDCARD_PRINCIPAL {
                continue;
            }
            if acl.host != WILDCARD && acl.host != host {
                continue;
            }
            let Some(op) = Operation::from_code(acl.operation) else {
                continue;
            };
            match acl.permission_type {
                PERMISSION_DENY if op == Operation::All || op == action.operation => return false,
                PERMISSION_ALLOW if op.allows(action.operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!has_resource_acls && self.config.allow_if_no_acl)
    }
}

/// An ACL filter of DescribeAcls and DeleteAcls (Kafka's `AclBindingFilter`):
/// `None` names and ANY codes match everything; pattern type MATCH matches
/// the ACLs that would apply to the named resource (rule 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: i8,
    pub name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclFilter {
    /// Kafka's checks of a filter: the codes must be known values.
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_type != RESOURCE_ANY
            && ResourceType::from_code(self.resource_type).is_none()
        {
            return Err(format!("Invalid resourceType {}", self.resource_type));
        }
        if !matches!(
            self.pattern_type,
            PATTERN_ANY | PATTERN_MATCH | PATTERN_LITERAL | PATTERN_PREFIXED
        ) {
            return Err("Unknown patternFilter.".into());
        }
        if self.operation != OPERATION_ANY && Operation::from_code(self.operation).is_none() {
            return Err("Unknown operation.".into());
        }
        if !matches!(
            self.permission_type,
            PERMISSION_ANY | PERMISSION_DENY | PERMISSION_ALLOW
        ) {
            return Err("Unknown permissionType.".into());
        }
        Ok(())
    }

    pub fn matches(&self, acl: &AclEntry) -> bool {
        let resource_ok = (self.resource_type == RESOURCE_ANY
            || self.resource_type == acl.resource_type)
            && match self.pattern_type {
                PATTERN_ANY => self.name.as_ref().is_none_or(|n| *n == acl.resource_name),
                PATTERN_MATCH => self.name.as_ref().is_none_or(|n| pattern_matches(acl, n)),
                p => {
                    p == acl.pattern_type
                        && self.name.as_ref().is_none_or(|n| *n == acl.resource_name)
                }
            };
        resource_ok
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && (self.operation == OPERATION_ANY || self.operation == acl.operation)
            && (self.permission_type == PERMISSION_ANY
                || self.permission_type == acl.permission_type)
    }
}

/// Kafka's checks of a new ACL (`AclControlManager.validateNewAcl` and the
/// broker's `AclApis`): known codes, a LITERAL or PREFIXED pattern, a
/// non-empty name (`kafka-cluster` for CLUSTER), a `Type:name` principal.
pub fn validate_new(acl: &AclEntry) -> Result<(), String> {
    let Some(rt) = ResourceType::from_code(acl.resource_type) else {
        return Err(format!("Invalid resourceType {}", acl.resource_type));
    };
    if !matches!(acl.pattern_type, PATTERN_LITERAL | PATTERN_PREFIXED) {
        return Err(format!("Invalid patternType {}", acl.pattern_type));
    }
    if Operation::from_code(acl.operation).is_none() {
        return Err(format!("Invalid operation {}", acl.operation));
    }
    if !matches!(acl.permission_type, PERMISSION_DENY | PERMISSION_ALLOW) {
        return Err(format!("Invalid permissionType {}", acl.permission_type));
    }
    if acl.resource_name.is_empty() {
        return Err("Invalid empty resource name".into());
    }
    if rt == ResourceType::Cluster && acl.resource_name != CLUSTER_NAME {
        return Err(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        ));
    }
    match acl.principal.split_once(':') {
        Some((t, n)) if !t.is_empty() && !n.is_empty() => Ok(()),
        _ => Err(format!(
            "Could not parse principal from `{}`",
            acl.principal
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;
    use ResourceType::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pattern: i8,
        who: &str,
        host: &str,
        op: Operation,
        perm: i8,
    ) -> AclEntry {
        AclEntry {
            resource_type: rt as i8,
            resource_name: name.into(),
            pattern_type: pattern,
            principal: who.into(),
            host: host.into(),
            operation: op as i8,
            permission_type: perm,
        }
    }

    const L: i8 = PATTERN_LITERAL;
    const P: i8 = PATTERN_PREFIXED;
    const ALLOW: i8 = PERMISSION_ALLOW;
    const DENY: i8 = PERMISSION_DENY;

    /// (ACLs, principal, host, resource type, name, operation, allowed).
    type Row = (
        Vec<AclEntry>,
        &'static str,
        &'static str,
        ResourceType,
        &'static str,
        Operation,
        bool,
    );

    /// The rows of [`Row`], with
    /// `allow.everyone.if.no.acl.found=false` and super user `User:admin`.
    #[test]
    fn kafkas_rules_table() {
        let alice = "User:alice";
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            // No ACL at all: denied by default; super users always allowed.
            (vec![], alice, "1.2.3.4", Topic, "t", Read, false),
            (vec![], "User:admin", "1.2.3.4", Topic, "t", Alter, true),
            // A literal ALLOW for the operation.
            (vec![acl(Topic, "t", L, alice, "*", Read, ALLOW)], alice, "h", Topic, "t", Read, true),
            (vec![acl(Topic, "t", L, alice, "*", Read, ALLOW)], alice, "h", Topic, "t", Write, false),
            (vec![acl(Topic, "t", L, alice, "*", Read, ALLOW)], alice, "h", Topic, "t2", Read, false),
            (vec![acl(Topic, "t", L, alice, "*", Read, ALLOW)], "User:bob", "h", Topic, "t", Read, false),
            (vec![acl(Topic, "t", L, alice, "*", Read, ALLOW)], alice, "h", Group, "t", Read, false),
            // Implied: READ/WRITE/DELETE/ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS.
            (vec![acl(Topic, "t", L, alice, "*", Read, ALLOW)], alice, "h", Topic, "t", Describe, true),
            (vec![acl(Topic, "t", L, alice, "*", Write, ALLOW)], alice, "h", Topic, "t", Describe, true),
            (vec![acl(Topic, "t", L, alice, "*", Delete, ALLOW)], alice, "h", Topic, "t", Describe, true),
            (vec![acl(Topic, "t", L, alice, "*", Alter, ALLOW)], alice, "h", Topic, "t", Describe, true),
            (vec![acl(Topic, "t", L, alice, "*", Create, ALLOW)], alice, "h", Topic, "t", Describe, false),
            (vec![acl(Topic, "t", L, alice, "*", AlterConfigs, ALLOW)], alice, "h", Topic, "t", DescribeConfigs, true),
            (vec![acl(Topic, "t", L, alice, "*", DescribeConfigs, ALLOW)], alice, "h", Topic, "t", AlterConfigs, false),
            (vec![acl(Topic, "t", L, alice, "*", Describe, ALLOW)], alice, "h", Topic, "t", Read, false),
            // ...but a DENY READ does not deny DESCRIBE.
            (vec![acl(Topic, "t", L, alice, "*", Read, ALLOW), acl(Topic, "t", L, alice, "*", Read, DENY)],
                alice, "h", Topic, "t", Describe, true),
            // ALL allows and denies everything.
            (vec![acl(Topic, "t", L, alice, "*", All, ALLOW)], alice, "h", Topic, "t", Delete, true),
            (vec![acl(Topic, "t", L, alice, "*", All, ALLOW), acl(Topic, "t", L, alice, "*", All, DENY)],
                alice, "h", Topic, "t", Read, false),
            // DENY wins, wherever it comes from (wildcard principal, prefixed, wildcard name).
            (vec![acl(Topic, "t", L, alice, "*", Read, ALLOW), acl(Topic, "t", L, "User:*", "*", Read, DENY)],
                alice, "h", Topic, "t", Read, false),
            (vec![acl(Topic, "t", L, alice, "*", Read, ALLOW), acl(Topic, "t", P, alice, "*", Read, DENY)],
                alice, "h", Topic, "t", Read, false),
            (vec![acl(Topic, "*", L, alice, "*", Read, DENY), acl(Topic, "t", L, alice, "*", Read, ALLOW)],
                alice, "h", Topic, "t", Read, false),
            // Wildcards: name "*", principal User:*, host "*".
            (vec![acl(Topic, "*", L, alice, "*", Read, ALLOW)], alice, "h", Topic, "anything", Read, true),
            (vec![acl(Topic, "t", L, "User:*", "*", Read, ALLOW)], "User:carol", "h", Topic, "t", Read, true),
            // Hosts: the exact address only.
            (vec![acl(Topic, "t", L, alice, "10.0.0.1", Read, ALLOW)], alice, "10.0.0.1", Topic, "t", Read, true),
            (vec![acl(Topic, "t", L, alice, "10.0.0.1", Read, ALLOW)], alice, "10.0.0.2", Topic, "t", Read, false),
            // Prefixed boundaries: a prefix of the name matches, a longer or other one does not;
            // a literal name is never a prefix; "*" is literal only as a LITERAL pattern.
            (vec![acl(Topic, "pay", P, alice, "*", Read, ALLOW)], alice, "h", Topic, "payments", Read, true),
            (vec![acl(Topic, "pay", P, alice, "*", Read, ALLOW)], alice, "h", Topic, "pay", Read, true),
            (vec![acl(Topic, "pay", P, alice, "*", Read, ALLOW)], alice, "h", Topic, "pa", Read, false),
            (vec![acl(Topic, "pay", P, alice, "*", Read, ALLOW)], alice, "h", Topic, "Payments", Read, false),
            (vec![acl(Topic, "pay", L, alice, "*", Read, ALLOW)], alice, "h", Topic, "payments", Read, false),
            (vec![acl(Topic, "*", P, alice, "*", Read, ALLOW)], alice, "h", Topic, "t", Read, false),
            // ACLs on the resource for someone else: no default allow, denied.
            (vec![acl(Topic, "t", L, "User:bob", "*", Read, ALLOW)], alice, "h", Topic, "t", Read, false),
            // Cluster operations.
            (vec![acl(Cluster, CLUSTER_NAME, L, alice, "*", IdempotentWrite, ALLOW)],
                alice, "h", Cluster, CLUSTER_NAME, IdempotentWrite, true),
            (vec![acl(Cluster, CLUSTER_NAME, L, alice, "*", Create, ALLOW)],
                alice, "h", Cluster, CLUSTER_NAME, Alter, false),
        ];
        let config = AuthorizerConfig {
            super_users: AuthorizerConfig::parse_super_users("User:admin; User:ops"),
            allow_if_no_acl: false,
        };
        for (i, (acls, who, host, rt, name, op, want)) in table.iter().enumerate() {
            let a = Authorizer {
                config: &config,
                acls: acls.iter(),
            };
            let p = KafkaPrincipal::user(who.trim_start_matches("User:"));
            let got = a.authorize(
                &p,
                host,
                Action {
                    resource_type: *rt,
                    name,
                    operation: *op,
                },
            );
            assert_eq!(
                got, *want,
                "row {i}: {who} {op:?} {rt:?}:{name} from {host} with {acls:?}"
            );
        }
    }

    #[test]
    fn allow_everyone_applies_only_to_resources_without_acls() {
        let config = AuthorizerConfig {
            super_users: BTreeSet::new(),
            allow_if_no_acl: true,
        };
        let acls = [acl(Topic, "guarded", L, "User:bob", "*", Read, ALLOW)];
        let a = Authorizer {
            config: &config,
            acls: acls.iter(),
        };
        let alice = KafkaPrincipal::user("alice");
        let read = |name| Action {
            resource_type: Topic,
            name,
            operation: Read,
        };
        assert!(a.authorize(&alice, "h", read("open")));
        assert!(!a.authorize(&alice, "h", read("guarded")));
        assert!(a.authorize(&KafkaPrincipal::user("bob"), "h", read("guarded")));
        assert_eq!(ResourceType::from_code(5), Some(TransactionalId));
        assert_eq!(ResourceType::from_code(1), None);
        assert_eq!(Operation::from_code(12), Some(IdempotentWrite));
        assert_eq!(Operation::from_code(1), None);
    }

    #[test]
    fn filters_and_new_acls_follow_kafka() {
        let a = acl(Topic, "pay", P, "User:alice", "*", Read, ALLOW);
        let any = AclFilter {
            resource_type: RESOURCE_ANY,
            name: None,
            pattern_type: PATTERN_ANY,
            principal: None,
            host: None,
            operation: OPERATION_ANY,
            permission_type: PERMISSION_ANY,
        };
        assert!(any.matches(&a));
        let with = |f: &dyn Fn(&mut AclFilter)| {
            let mut x = any.clone();
            f(&mut x);
            x.matches(&a)
        };
        assert!(with(&|f| f.name = Some("pay".into())));
        assert!(!with(&|f| f.name = Some("payments".into())));
        assert!(with(&|f| {
            f.pattern_type = PATTERN_MATCH;
            f.name = Some("payments".into())
        }));
        assert!(!with(&|f| {
            f.pattern_type = PATTERN_MATCH;
            f.name = Some("pa".into())
        }));
        assert!(!with(&|f| f.pattern_type = PATTERN_LITERAL));
        assert!(with(&|f| f.pattern_type = PATTERN_PREFIXED));
        assert!(!with(&|f| f.resource_type = Group as i8));
        assert!(!with(&|f| f.principal = Some("User:bob".into())));
        assert!(!with(&|f| f.operation = Write as i8));
        assert!(!with(&|f| f.permission_type = PERMISSION_DENY));
        assert!(any.validate().is_ok());
        assert!(AclFilter {
            pattern_type: 0,
            ..any.clone()
        }
        .validate()
        .is_err());
        assert!(AclFilter {
            operation: 0,
            ..any.clone()
        }
        .validate()
        .is_err());

        assert!(validate_new(&a).is_ok());
        let bad = |f: &dyn Fn(&mut AclEntry)| {
            let mut x = a.clone();
            f(&mut x);
            validate_new(&x).is_err()
        };
        assert!(bad(&|x| x.resource_type = RESOURCE_ANY));
        assert!(bad(&|x| x.pattern_type = PATTERN_MATCH));
        assert!(bad(&|x| x.operation = OPERATION_ANY));
        assert!(bad(&|x| x.permission_type = PERMISSION_ANY));
        assert!(bad(&|x| x.resource_name.clear()));
        assert!(bad(&|x| x.principal = "alice".into()));
        assert!(bad(&|x| {
            x.resource_type = Cluster as i8;
            x.resource_name = "other".into()
        }));
    }
}
