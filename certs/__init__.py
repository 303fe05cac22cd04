"""Certificates for the stacks' TLS: the local stack (stack/), the container stacks' files (deploy_render/) and
the tests all mint theirs with certs.tls, which imports nothing of the project.
"""
