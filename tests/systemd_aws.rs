//! On AWS, with stand-ins: a systemd host plays an EC2 instance (the
//! project's metadata stand-in at 169.254.169.254 in its network namespace,
//! serving IMDSv2 and the instance profile's credentials) in an AWS whose
//! EC2 and ELB APIs are moto's server, reached through the SDKs'
//! `AWS_ENDPOINT_URL`. `./install` finds AWS by itself, names the node by
//! the instance's private DNS name, and runs the API server, the controller
//! manager and the kubelet with the runtime's AWS provider: the node's
//! provider ID names the instance (the kubelet and the controller manager
//! asked EC2, here moto, about it), and the `aws-ebs` StorageClass is there:
//! a claim of it gets an EBS volume in moto, made and attached to the
//! instance by the real controller manager.
//! A Service of type LoadBalancer gets an internal classic ELB in moto,
//! made by the real controller manager, with the instance behind it.
//! `--provision` makes the flavor's second machine in EC2 (with keys from
//! a credentials file named on the command line) with a start-up script
//! that fetches tele from the node with a token and joins; the install is
//! killed with SIGKILL once the machine exists and `--resume` makes none
//! twice;
//! `tele uninstall --deprovision` terminates it and nothing else.

mod support;

use std::time::Duration;

use support::aws::{fixture, moto};
use support::example::example_bundle;
use support::systemd_host::{HostOptions, SystemdHost};
use support::*;

const REGION: &str = "eu-west-1";
const ZONE: &str = "eu-west-1a";
const HOST_IP: &str = "10.213.0.41";
/// The host bridge's address, where moto listens for the host.
const BRIDGE_IP: &str = "10.213.0.1";

#[test]
fn on_aws_the_node_is_the_instance_and_its_components_run_with_the_aws_provider() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = example_bundle(dir.path());
    let mut host = SystemdHost::boot(
        "tele-aws1",
        HostOptions::new(&format!("{HOST_IP}/24")).bind_ro(&bundle, "/opt/hello"),
    );
    host.wait_running(Duration::from_secs(120));

    // AWS's APIs: moto, on the host bridge.
    let (_moto, endpoint) = moto(BRIDGE_IP, None);
    let made = fixture(&[&endpoint, REGION, ZONE, "10.213.0.0/24", HOST_IP, "shop"]);
    let instance = made["instance_id"].as_str().unwrap().to_string();
    let dns = made["private_dns"].as_str().unwrap().to_string();
    assert_eq!(made["private_ip"], HOST_IP);

    // The instance's metadata service, in the host's network namespace.
    let _imds = host.serve_metadata(&[
        "--cloud",
        "aws",
        "--instance-id",
        &instance,
        "--region",
        REGION,
        "--zone",
        ZONE,
        "--hostname",
        &dns,
        "--local-ipv4",
        HOST_IP,
        "--subnet-id",
        made["subnet"].as_str().unwrap(),
        "--security-group-id",
        made["security_group"].as_str().unwrap(),
        "--instance-profile-arn",
        made["instance_profile"].as_str().unwrap(),
        "--log",
        dir.path().join("imds.log").to_str().unwrap(),
    ]);

    // The machines are made with keys of their own, from a credentials
    // file named on the command line (the components keep the instance
    // profile's role).
    std::fs::write(
        host.root().join("root/aws-keys"),
        "[default]\naws_access_key_id = AKIANOTTHESE00000000\naws_secret_access_key = not-these\n\n\
         [ops]\naws_access_key_id = AKIAPROVISIONKEYS000\naws_secret_access_key = provision-secret-value\n",
    )
    .unwrap();
    let endpoint_env = format!("AWS_ENDPOINT_URL={endpoint}");
    let keys = [
        "--aws-credentials-file",
        "/root/aws-keys",
        "--aws-profile",
        "ops",
    ];
    let mut first_run = host
        .command(
            &[
                &["env", &endpoint_env, "/opt/hello/install"][..],
                &keys,
                &[
                    "--autofix",
                    "--timeout",
                    "300",
                    "--cluster-name",
                    "shop",
                    // The second node of the flavor is made in EC2.
                    "--flavor",
                    "two",
                    "--provision",
                    "--instance-type",
                    "node=c5.large",
                ],
            ]
            .concat(),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The install is killed (SIGKILL) as soon as the machine exists in
    // EC2: in its /provision phase, the machine made and perhaps not yet
    // recorded. --resume carries on and makes no machine twice.
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while fixture(&["instances", &endpoint, REGION])
        .as_array()
        .unwrap()
        .len()
        < 2
    {
        if let Some(status) = first_run.try_wait().unwrap() {
            panic!("the install ended ({status}) before making the machine");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no machine made within 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    host.sh("pkill -KILL -f /opt/hello/install");
    let _ = first_run.wait();
    let plan = host.ok_sh("tele plan");
    assert!(
        plan.lines()
            .any(|l| l.starts_with("/app ") && !l.contains("completed")),
        "the install was not killed before its app:\n{plan}"
    );
    let o = host.exec(
        &[
            &["env", &endpoint_env, "/opt/hello/install", "--resume"][..],
            &keys,
            &["--output-format", "json"],
        ]
        .concat(),
    );
    assert!(
        o.status.success(),
        "install on the AWS host failed:\n{}\n{}\nmetadata requests:\n{}\nservices' errors:\n{}",
        stderr(&o),
        stdout(&o),
        std::fs::read_to_string(dir.path().join("imds.log")).unwrap_or_default(),
        String::from_utf8_lossy(
            &host
                .sh("grep -hE '^(F|E)[0-9]{4}|^panic|^goroutine 1 ' /var/lib/tele/logs/*.log | head -n 40")
                .stdout
        )
    );
    assert_eq!(json(&o)["node"], dns.as_str());
    // Preflight tried the machines' actions with the file's keys, which
    // are in no file the install wrote.
    let preflight = host.ok_sh("cat /var/lib/tele/preflight.json");
    assert!(
        preflight.contains("/root/aws-keys (profile ops) may call all 4 actions --provision needs"),
        "{preflight}"
    );
    let found = host.sh("grep -rl provision-secret-value /var/lib/tele /etc/systemd/system");
    assert!(stdout(&found).trim().is_empty(), "{}", stdout(&found));

    // The node is the instance, as the AWS provider sees it.
    host.eventually(
        &format!("kubectl get node {dns} -o jsonpath={{.spec.providerID}}"),
        &format!("aws:///{ZONE}/{instance}"),
        Duration::from_secs(120),
    );
    for unit in ["kube-apiserver", "kube-controller-manager", "kubelet"] {
        let cmdline = host.ok_sh(&format!(
            "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value tele-{unit})/cmdline"
        ));
        assert!(
            cmdline.contains("--cloud-provider=aws")
                && cmdline.contains("--cloud-config=/var/lib/tele/"),
            "{unit}: {cmdline}"
        );
    }
    // The cloud config names the cluster and the endpoints, and holds no
    // credential (those come from the instance profile).
    let conf = host.ok_sh(
        "stat -c %a /var/lib/tele/kubernetes/cloud.conf; cat /var/lib/tele/kubernetes/cloud.conf",
    );
    assert!(conf.starts_with("600\n"), "{conf}");
    assert!(conf.contains("KubernetesClusterID = shop"), "{conf}");
    assert!(conf.contains(&format!("URL = {endpoint}")), "{conf}");
    assert!(!conf.contains("tele-test-secret"), "{conf}");
    let status = host.ok_sh("tele status");
    assert!(
        status.contains(&format!(
            "provider:  aws, region {REGION} ({ZONE}), instance {instance} (m5.large)"
        )),
        "{status}"
    );
    host.ok_sh("kubectl get storageclass aws-ebs");

    // A Service of type LoadBalancer gets an internal ELB from the
    // controller manager, in the subnet tagged for the cluster, tagged for
    // the cluster itself, with the instance behind it and a health check of
    // the Service's node port; the Service shows the ELB's name. (The
    // fixture gives a new ELB the default health check AWS gives it and
    // moto does not: see aws_fixture.py.)
    host.ok_sh(
        "kubectl apply -f - <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: hello-lb
  annotations: {service.beta.kubernetes.io/aws-load-balancer-internal: \"true\"}
spec:
  type: LoadBalancer
  selector: {app: hello-web}
  ports: [{port: 80, targetPort: 8080}]
EOF",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let lb = loop {
        let lbs = fixture(&["load-balancers", &endpoint, REGION]);
        let found = lbs.as_array().unwrap().iter().find(|lb| {
            lb["instances"]
                .as_array()
                .is_some_and(|i| i.iter().any(|i| i == instance.as_str()))
        });
        if let Some(lb) = found {
            break lb.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no load balancer with the instance behind it: {lbs}\nevents:\n{}\ncontroller manager:\n{}",
            String::from_utf8_lossy(&host.sh("kubectl describe service hello-lb").stdout),
            String::from_utf8_lossy(
                &host
                    .sh("systemctl show -p NRestarts tele-kube-controller-manager; grep -avE '^I[0-9]{4}' /var/lib/tele/logs/kube-controller-manager.log | grep -aE '^(E|F)[0-9]{4}|panic|aws' | tail -n 30")
                    .stdout
            ),
        );
        std::thread::sleep(Duration::from_secs(5));
    };
    assert_eq!(lb["scheme"], "internal", "{lb}");
    assert_eq!(lb["subnets"], serde_json::json!([made["subnet"]]), "{lb}");
    assert_eq!(lb["tags"]["kubernetes.io/cluster/shop"], "owned", "{lb}");
    let node_port =
        host.ok_sh("kubectl get service hello-lb -o jsonpath={.spec.ports[0].nodePort}");
    // The provider's own health check, not AWS's default.
    let check = &lb["health_check"];
    assert_eq!(check["Target"], format!("TCP:{}", node_port.trim()), "{lb}");
    assert_eq!(
        (&check["Interval"], &check["HealthyThreshold"]),
        (&10.into(), &2.into()),
        "{lb}"
    );
    assert!(
        lb["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["LoadBalancerPort"] == 80),
        "{lb}"
    );
    host.eventually(
        "kubectl get service hello-lb -o jsonpath={.status.loadBalancer.ingress[0].hostname}",
        lb["dns"].as_str().unwrap(),
        Duration::from_secs(60),
    );

    // A claim of the class aws-ebs, used by a pod: the real controller
    // manager makes an EBS volume in moto (in the node's zone, of the
    // class's type, tagged for the cluster and the claim), binds the claim
    // to it and attaches it to the instance the pod was scheduled on. (No
    // device appears in a test host, so the pod itself does not start.)
    host.ok_sh(
        "image=$(kubectl get deployment hello-web -o jsonpath='{.spec.template.spec.containers[0].image}') && kubectl apply -f - <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  storageClassName: aws-ebs
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: uses-ebs}
spec:
  containers: [{name: c, image: $image, volumeMounts: [{name: d, mountPath: /data}]}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]
EOF",
    );
    host.eventually(
        "kubectl get pvc data -o jsonpath={.status.phase}",
        "Bound",
        Duration::from_secs(180),
    );
    // The claim's own volume (InfluxDB's claim has one of the local class).
    let name = host.ok_sh("kubectl get pvc data -o jsonpath={.spec.volumeName}");
    let pv = host.ok_sh(&format!(
        "kubectl get pv {} -o jsonpath={{.spec.awsElasticBlockStore.volumeID}}",
        name.trim()
    ));
    let volume_id = pv.trim().rsplit('/').next().unwrap().to_string();
    assert!(pv.trim().starts_with(&format!("aws://{ZONE}/vol-")), "{pv}");
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let volume = loop {
        let all = fixture(&["volumes", &endpoint, REGION]);
        let v = all
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == volume_id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no volume {volume_id} in EC2: {all}"));
        if v["attachments"].as_array().is_some_and(|a| !a.is_empty()) {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the volume was not attached: {v}\n{}",
            String::from_utf8_lossy(&host.sh("kubectl describe pod uses-ebs | tail -n 15").stdout)
        );
        std::thread::sleep(Duration::from_secs(5));
    };
    assert_eq!(
        (&volume["size"], &volume["type"], &volume["zone"]),
        (&1.into(), &"gp2".into(), &ZONE.into()),
        "{volume}"
    );
    assert_eq!(
        volume["tags"]["kubernetes.io/cluster/shop"], "owned",
        "{volume}"
    );
    assert_eq!(
        volume["tags"]["kubernetes.io/created-for/pvc/name"], "data",
        "{volume}"
    );
    assert_eq!(
        volume["attachments"][0]["instance"],
        instance.as_str(),
        "{volume}"
    );

    // --provision made the flavor's second machine: one instance of the
    // type asked for, in this instance's subnet and security group, tagged
    // for the cluster, whose start-up script trusts only the cluster CA,
    // fetches tele from this node with a token of its profile and joins.
    let all = fixture(&["instances", &endpoint, REGION]);
    let made_here: Vec<&serde_json::Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["id"] != instance.as_str())
        .collect();
    assert_eq!(made_here.len(), 1, "{all}");
    let machine = made_here[0];
    assert_eq!(machine["type"], "c5.large", "{machine}");
    assert_eq!(machine["subnet"], made["subnet"], "{machine}");
    assert_eq!(
        machine["security_groups"],
        serde_json::json!([made["security_group"]]),
        "{machine}"
    );
    assert_eq!(
        machine["tags"]["kubernetes.io/cluster/shop"], "owned",
        "{machine}"
    );
    assert_eq!(machine["tags"]["Name"], "shop-node-1", "{machine}");
    assert_eq!(
        machine["instance_profile"], made["instance_profile"],
        "{machine}"
    );
    let script = machine["user_data"].as_str().unwrap();
    let ca = host.ok_sh("cat /var/lib/tele/pki/ca.crt");
    assert!(script.contains(ca.trim()), "{script}");
    assert!(
        script.contains(&format!("https://{HOST_IP}:6444/v1/tele"))
            && script.contains(&format!("./tele join {HOST_IP}:6444 --token "))
            && script.contains("--role node"),
        "{script}"
    );
    let token = script
        .split("Authorization: Bearer ")
        .nth(1)
        .and_then(|t| t.split('\'').next())
        .unwrap();
    // What the script fetches is this node's tele; without the token, nothing.
    let fetched = host.sh(&format!(
        "cd /tmp && printf '%s' \"$(cat /var/lib/tele/pki/ca.crt)\" > ca.pem && curl -fsS --cacert ca.pem -H 'Authorization: Bearer {token}' -o tele.fetched https://{HOST_IP}:6444/v1/tele && sha256sum < tele.fetched; sha256sum < /var/lib/tele/bin/tele"
    ));
    let sums = stdout(&fetched);
    let sums: Vec<&str> = sums.lines().collect();
    assert!(
        sums.len() == 2 && sums[0] == sums[1],
        "{}\n{}",
        stdout(&fetched),
        stderr(&fetched)
    );
    let refused = host.sh(&format!(
        "curl -s -o /dev/null -w '%{{http_code}}' --cacert /tmp/ca.pem https://{HOST_IP}:6444/v1/tele"
    ));
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "403");

    // The machine starts: a second host plays it (at the instance's private
    // address, its metadata naming the instance) and runs its start-up
    // script as cloud-init would. It fetches tele, joins as a node of the
    // cluster named as AWS names it, and becomes Ready.
    let ip = machine["private_ip"].as_str().unwrap();
    let dns = machine["private_dns"].as_str().unwrap();
    let mut second = SystemdHost::boot("tele-aws2", HostOptions::new(&format!("{ip}/24")));
    second.wait_running(Duration::from_secs(120));
    let _imds2 = second.serve_metadata(&[
        "--cloud",
        "aws",
        "--instance-id",
        machine["id"].as_str().unwrap(),
        "--instance-type",
        "c5.large",
        "--region",
        REGION,
        "--zone",
        ZONE,
        "--hostname",
        dns,
        "--local-ipv4",
        ip,
    ]);
    std::fs::write(second.root().join("root/user-data"), script).unwrap();
    let o = second.exec(&[
        "env",
        &format!("AWS_ENDPOINT_URL={endpoint}"),
        "sh",
        "/root/user-data",
    ]);
    assert!(
        o.status.success(),
        "the start-up script failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    host.eventually(
        &format!("kubectl get node {dns} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}} {{.spec.providerID}}'"),
        &format!("True aws:///{ZONE}/{}", machine["id"].as_str().unwrap()),
        Duration::from_secs(180),
    );

    // Uninstalling with --deprovision terminates that machine and nothing else.
    let o = host.exec(&[
        "env",
        &format!("AWS_ENDPOINT_URL={endpoint}"),
        "tele",
        "uninstall",
        "--yes",
        "--deprovision",
        "--aws-credentials-file",
        "/root/aws-keys",
        "--aws-profile",
        "ops",
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(machine["id"].as_str().unwrap()),
        "{}",
        stdout(&o)
    );
    for i in fixture(&["instances", &endpoint, REGION])
        .as_array()
        .unwrap()
    {
        let want = if i["id"] == machine["id"] {
            "terminated"
        } else {
            "running"
        };
        assert_eq!(i["state"], want, "{i}");
    }
}
