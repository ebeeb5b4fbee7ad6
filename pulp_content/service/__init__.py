"""The merged Pulp content service: serving stored artifacts and streaming lazy ones."""
