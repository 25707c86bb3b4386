"""The pipeline as data: the stage table, each stage's library files, and ``dvc.yaml`` written
from them. It knows the stages by name and module path and imports none of them."""
