"""The taxonomy YAML files that ship with llmsurgeon."""
