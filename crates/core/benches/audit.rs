//! Audit benchmark: what one scan's judgement costs at fleet scale, the AWS reads aside.
//! A scope of 10,000 running instances on 300 roles (each with AmazonSSMManagedInstanceCore and
//! two inline policies; one in ten with a risky grant) is judged by the instance-role audit, the
//! SSM fleet health check and the drift state; then a second day's report is compared with the
//! first. Prints times, findings and sizes (the report JSON, the SNS summary under 256 KiB).
//!
//! `cargo bench -p opsflow-core --bench audit`. Deterministic: the same fleet every run.

use std::collections::BTreeMap;
use std::time::Instant;

use opsflow_core::audit::drift::ScopeState;
use opsflow_core::audit::report::{Part, Report};
use opsflow_core::audit::ssm::{self, HealthFacts, HealthRules, ManagedNode, NetworkFacts};
use opsflow_core::audit::{roles, AuditInstance, IamFacts, RoleFacts};
use serde_json::json;

const INSTANCES: usize = 10_000;
const ROLES: usize = 300;
const NOW_S: i64 = 1_796_000_000;
const CORE: &str = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";

fn fleet(day: usize) -> (Vec<AuditInstance>, IamFacts) {
    let mut roles_ = Vec::new();
    for r in 0..ROLES {
        let risky = r % 10 == 0;
        let mut inline = BTreeMap::from([
            (
                "app".to_string(),
                json!({"Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": format!("arn:aws:s3:::bucket-{r}/*")},
                                     {"Effect": "Allow", "Action": "dynamodb:*", "Resource": format!("arn:aws:dynamodb:eu-west-1:1:table/t-{r}")}]}),
            ),
            (
                "logs".to_string(),
                json!({"Statement": {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": "*"}}),
            ),
        ]);
        if risky {
            inline.insert(
                "deploy".into(),
                json!({"Statement": {"Effect": "Allow", "Action": ["iam:PassRole", "ec2:RunInstances"], "Resource": "*"}}),
            );
        }
        // Day two: one more role can write its own policies.
        if day == 2 && r == 7 {
            inline.insert(
                "self".into(),
                json!({"Statement": {"Effect": "Allow", "Action": "iam:PutRolePolicy", "Resource": "*"}}),
            );
        }
        roles_.push(RoleFacts {
            name: format!("role-{r}"),
            arn: format!("arn:aws:iam::1:role/role-{r}"),
            boundary: None,
            attached: vec![CORE.to_string()],
            inline,
            profiles: vec![format!("arn:aws:iam::1:instance-profile/role-{r}")],
            trust: Some(
                json!({"Statement": {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}}),
            ),
        });
    }
    let iam = IamFacts {
        roles: roles_,
        managed: BTreeMap::from([(
            CORE.to_string(),
            Some(json!({"Statement": [
                {"Effect": "Allow", "Action": ["ssm:DescribeAssociation", "ssm:GetDocument", "ssm:UpdateInstanceInformation", "ssm:ListInstanceAssociations"], "Resource": "*"},
                {"Effect": "Allow", "Action": ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"], "Resource": "*"},
                {"Effect": "Allow", "Action": ["ec2messages:AcknowledgeMessage", "ec2messages:GetMessages", "ec2messages:SendReply"], "Resource": "*"}]})),
        )]),
    };
    let instances = (0..INSTANCES)
        .map(|i| AuditInstance {
            id: format!("i-{i:017x}"),
            name: Some(format!("node-{i}")),
            state: "running".into(),
            // One in a hundred without a profile.
            profile_arn: (i % 100 != 0).then(|| format!("arn:aws:iam::1:instance-profile/role-{}", i % ROLES)),
            platform: "linux".into(),
            launched_s: Some(NOW_S - 86_400),
            vpc_id: Some("vpc-1".into()),
            subnet_id: Some(format!("subnet-{}", i % 6)),
            private_ip: Some(format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256)),
            security_groups: vec!["sg-app".into()],
            public_ip: false,
            ..AuditInstance::default()
        })
        .collect();
    (instances, iam)
}

fn main() {
    let (instances, iam) = fleet(1);
    let t = Instant::now();
    let findings = roles::findings("1", "eu-west-1", &instances, &iam);
    let judged = t.elapsed();
    let t = Instant::now();
    let state = ScopeState::of("1", "eu-west-1", "t", &instances, &iam);
    let state_time = t.elapsed();
    let state_bytes = serde_json::to_vec(&state).unwrap().len();
    let part = |findings| Part {
        account: "1".into(),
        region: "eu-west-1".into(),
        scanned_at: "t".into(),
        counted: BTreeMap::from([("instances".into(), INSTANCES)]),
        findings,
        error: None,
    };
    let first = Report::new(
        "roles",
        "Instance-role audit",
        "day-1",
        "t1",
        vec![part(findings.clone())],
        vec![],
        None,
    );
    let (instances2, iam2) = fleet(2);
    let findings2 = roles::findings("1", "eu-west-1", &instances2, &iam2);
    let t = Instant::now();
    let second = Report::new(
        "roles",
        "Instance-role audit",
        "day-2",
        "t2",
        vec![part(findings2)],
        vec![],
        Some(&first),
    );
    let diffed = t.elapsed();
    let t = Instant::now();
    let json_bytes = serde_json::to_vec(&second).unwrap().len();
    let text_bytes = second.text().len();
    let publication = second.publication("s3://bucket/audit/roles/runs/day-2/report.txt");
    let rendered = t.elapsed();

    // Fleet health: every instance listed Online but one in fifty (ConnectionLost) and the
    // profile-less ones (unmanaged); private subnets 4 and 5 have no route out.
    let nodes: Vec<ManagedNode> = instances
        .iter()
        .filter(|i| i.profile_arn.is_some())
        .map(|i| ManagedNode {
            id: i.id.clone(),
            ping_status: if i.id.ends_with("32") { "ConnectionLost" } else { "Online" }.into(),
            last_ping_s: Some(NOW_S - 60),
            agent_version: Some("3.3.1000.0".into()),
            is_latest: Some(true),
            resource_type: "EC2Instance".into(),
            ip_address: i.private_ip.clone(),
            ..ManagedNode::default()
        })
        .collect();
    let net = NetworkFacts {
        egress_443: BTreeMap::from([("sg-app".into(), true)]),
        default_route: (0..6)
            .map(|s| (format!("subnet-{s}"), (s < 4).then(|| "nat-1".to_string())))
            .collect(),
        endpoints: BTreeMap::new(),
    };
    let facts = HealthFacts {
        instances: instances.clone(),
        nodes,
        iam: iam.clone(),
        dhmc_role: None,
        net,
    };
    let t = Instant::now();
    let (health, _) = ssm::findings("1", "eu-west-1", &facts, HealthRules::new(NOW_S));
    let health_time = t.elapsed();

    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!("audit benchmark: one scope of {INSTANCES} running instances on {ROLES} roles (34 escalation paths each)");
    println!("  role audit        {:>8.1} ms  {} findings", ms(judged), findings.len());
    println!("  drift state       {:>8.1} ms  {} KiB of JSON", ms(state_time), state_bytes / 1024);
    println!(
        "  next day's diff   {:>8.1} ms  {} new, {} resolved, {} changed",
        ms(diffed),
        second.changes.new.len(),
        second.changes.resolved.len(),
        second.changes.changed.len()
    );
    println!(
        "  report            {:>8.1} ms  JSON {} KiB, text {} KiB, SNS message {} KiB (limit 256)",
        ms(rendered),
        json_bytes / 1024,
        text_bytes / 1024,
        publication.message.len() / 1024
    );
    println!("  fleet health      {:>8.1} ms  {} findings", ms(health_time), health.len());
    assert_eq!(second.changes.new.len(), 1, "role-7 can now write its own policies");
    assert!(publication.message.len() <= 256 * 1024);
}
