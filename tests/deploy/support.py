"""The CloudFormation template as tests see it: read, deployed into the stand-in's CloudFormation,
its resources described the way `bootstrap`'s are, and its IAM policies checked against the AWS
calls Herald makes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from fnmatch import fnmatchcase
from typing import Any

import boto3
from cfnlint.decode import decode_str

from notifications import aws
from tests.e2e.support import ROOT

TEMPLATE = ROOT / "deploy/cloudformation/herald.yaml"
REGION = "us-east-1"
# moto's account; the alarm topic only has to look like an ARN (moto does not model the alarms).
ALARM_TOPIC = "arn:aws:sns:us-east-1:123456789012:herald-alarms"
# moto's CloudFormation does not model CloudWatch alarms: it skips them with a warning, which test
# modules that deploy the template ignore (a dot stands for each colon of "AWS::CloudWatch::Alarm",
# since colons separate a warning filter's fields).
IGNORE_UNMODELLED_ALARMS = "ignore:Tried to parse AWS..CloudWatch..Alarm:UserWarning"


# -- the template -------------------------------------------------------------------------------


def load_template() -> dict[str, Any]:
    """The template as cfn-lint reads it: CloudFormation's short forms (`!Ref X`, `!GetAtt A.B`)
    in their long forms (`{"Ref": "X"}`, `{"Fn::GetAtt": ["A", "B"]}`)."""
    template, problems = decode_str(TEMPLATE.read_text())
    assert not problems, problems
    return template


def deploy_stack(endpoint: str, stack_name: str, **parameters: object) -> dict[str, str]:
    """Create a stack from the template in the stand-in's CloudFormation (other parameters at
    their defaults); returns its outputs."""
    cloudformation = boto3.client("cloudformation", endpoint_url=endpoint, region_name=REGION)
    values = {"AlarmTopicArn": ALARM_TOPIC, **parameters}
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in values.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],  # the policies have names
    )
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    [stack] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    return {output["OutputKey"]: output["OutputValue"] for output in stack["Outputs"]}


# -- what exists: the table and the queues, described the same way whoever made them ------------


def table_shape(table_name: str) -> dict[str, Any]:
    """What Herald depends on in a table: keys, attribute types, indexes, billing, TTL."""
    table = aws.dynamodb().describe_table(TableName=table_name)["Table"]
    ttl = aws.dynamodb().describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]

    def indexes(kind: str) -> dict[str, Any]:
        return {
            index["IndexName"]: {
                "KeySchema": index["KeySchema"],
                "Projection": {
                    "ProjectionType": index["Projection"]["ProjectionType"],
                    "NonKeyAttributes": sorted(index["Projection"].get("NonKeyAttributes", [])),
                },
            }
            for index in table.get(kind) or []
        }

    return {
        "KeySchema": table["KeySchema"],
        "AttributeDefinitions": {
            attribute["AttributeName"]: attribute["AttributeType"]
            for attribute in table["AttributeDefinitions"]
        },
        "GlobalSecondaryIndexes": indexes("GlobalSecondaryIndexes"),
        "LocalSecondaryIndexes": indexes("LocalSecondaryIndexes"),
        "BillingMode": table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"),
        "TimeToLiveAttribute": (
            ttl.get("AttributeName") if ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING") else None
        ),
    }


QUEUE_ATTRIBUTES = (
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
)


def queues_shape(queue_name: str, dlq_name: str) -> dict[str, Any]:
    """The work queue and its dead-letter queue: timings, sizes, and the redrive policy with its
    target named by role ("the dead-letter queue") rather than by ARN."""
    sqs = aws.sqs()

    def attributes(name: str) -> dict[str, str]:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    def shape(found: Mapping[str, str], dlq_arn: str) -> dict[str, Any]:
        described: dict[str, Any] = {name: int(found[name]) for name in QUEUE_ATTRIBUTES}
        redrive = json.loads(found["RedrivePolicy"]) if found.get("RedrivePolicy") else None
        if redrive is not None:
            target = redrive["deadLetterTargetArn"]
            redrive = {
                "maxReceiveCount": int(redrive["maxReceiveCount"]),
                "deadLetterTarget": "the dead-letter queue" if target == dlq_arn else target,
            }
        described["RedrivePolicy"] = redrive
        return described

    work, dead = attributes(queue_name), attributes(dlq_name)
    return {
        "work queue": shape(work, dead["QueueArn"]),
        "dead-letter queue": shape(dead, dead["QueueArn"]),
    }


def differences(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Where two descriptions differ, one line per difference: `path: ours != theirs`."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found = []
        for key in sorted(set(ours) | set(theirs), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in theirs:
                found.append(f"{where}: only in bootstrap ({ours[key]!r})")
            elif key not in ours:
                found.append(f"{where}: only in the template ({theirs[key]!r})")
            else:
                found.extend(differences(ours[key], theirs[key], where))
        return found
    return [] if ours == theirs else [f"{path}: bootstrap {ours!r}, template {theirs!r}"]


# -- IAM: the calls Herald makes, and whether a policy allows them ------------------------------

# SQS authorises its batch calls with the single call's permission (there is no
# sqs:SendMessageBatch permission).
SQS_BATCH_PERMISSIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def policy_document(endpoint: str, policy_arn: str) -> dict[str, Any]:
    """A deployed managed policy's document, with the stack's ARNs filled in."""
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION)
    version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
    return iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"][
        "Document"
    ]


def allows(document: Mapping[str, Any], action: str, resource: str) -> bool:
    """Whether an Allow statement of `document` grants `action` on `resource` (the policies have
    no Deny and no conditions; actions match without regard to case, as in IAM)."""

    def listed(value: str | list[str]) -> list[str]:
        return [value] if isinstance(value, str) else list(value)

    return any(
        statement["Effect"] == "Allow"
        and any(fnmatchcase(action.lower(), a.lower()) for a in listed(statement["Action"]))
        and any(fnmatchcase(resource, r) for r in listed(statement["Resource"]))
        for statement in document["Statement"]
    )


TRANSACT_PERMISSIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


class CallRecorder:
    """Records, per process, each (IAM action, resource ARN) that Herald's own AWS clients are
    asked for (working and probe clients). `outputs` are the stack's, for the ARNs."""

    def __init__(self, outputs: Mapping[str, str]) -> None:
        self._table_prefix = outputs["TableArn"].rsplit("/", 1)[0]  # arn:…:table
        self._queue_prefix = outputs["QueueArn"].rsplit(":", 1)[0]  # arn:aws:sqs:region:account
        self.process: str | None = None
        self.calls: dict[str, set[tuple[str, str]]] = {}
        self._registrations: list[tuple[Any, str, Any]] = []

    @contextmanager
    def acting_as(self, process: str) -> Iterator[None]:
        """Calls made from now on (on any thread) are that process's, until another one acts:
        status counts written behind, on the flushing thread, go to the last one."""
        self.process = process
        yield

    def start(self) -> None:
        for service in ("dynamodb", "sqs"):
            for probe in (False, True):
                client = aws.client(service, probe=probe)
                event = f"before-parameter-build.{client.meta.service_model.service_id.hyphenize()}"
                client.meta.events.register(event, self._record)
                self._registrations.append((client, event, self._record))

    def stop(self) -> None:
        for client, event, handler in self._registrations:
            client.meta.events.unregister(event, handler)
        self._registrations.clear()

    def _record(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        service = model.service_model.signing_name  # "dynamodb", "sqs"
        operation = SQS_BATCH_PERMISSIONS.get(model.name, model.name)
        if self.process is None:
            return
        if model.name == "TransactWriteItems":
            # IAM authorises a transaction as the writes inside it.
            for entry in params["TransactItems"]:
                ((kind, write),) = entry.items()
                action = f"dynamodb:{TRANSACT_PERMISSIONS[kind]}"
                resource = f"{self._table_prefix}/{write['TableName']}"
                self.calls.setdefault(self.process, set()).add((action, resource))
            return
        for resource in self._resources(service, params):
            self.calls.setdefault(self.process, set()).add((f"{service}:{operation}", resource))

    def _resources(self, service: str, params: Mapping[str, Any]) -> list[str]:
        if service == "dynamodb":
            tables = list(params["RequestItems"]) if "RequestItems" in params else []
            if not tables:
                table = f"{self._table_prefix}/{params['TableName']}"
                index = params.get("IndexName")
                return [f"{table}/index/{index}" if index else table]
            return [f"{self._table_prefix}/{name}" for name in tables]
        name = params.get("QueueName") or params["QueueUrl"].rsplit("/", 1)[1]
        return [f"{self._queue_prefix}:{name}"]
