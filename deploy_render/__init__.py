"""The container stacks' side of the repository: the files the compose and Kubernetes stacks read, rendered from
the local stack's settings (manifests.py, `python -m deploy_render`), the compose broker's secrets
(compose_kafka.py) and the ACL job its compose file runs (kafka_acls.py).
"""
