"""Which data and which model a run is made on: a named dataset or the user's CSV / image folder, and the zoo's model
or the user's model file. The config factories of Label bias, Glitch signals and the CLI build these parts here, so
they choose the data and the model, and refuse a model file where it cannot go, alike; each keeps its own training
and curvature settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from influence_core.config import DataConfig, ModelConfig, TrainConfig, default_training
from influence_core.errors import InputError

OWN_DATA = ("csv", "image_folder")  # the user's own data, read from ``path``

# what a model file cannot do: it was trained elsewhere, and nothing here trains it again
NOT_RETRAINED = "your model was trained on your data as it is, and it is not retrained here"


@dataclass(frozen=True)
class Source:
    """``dataset``: a named set or "csv" / "image_folder" at ``path`` (a CSV's ``label_column`` and ``id_column``; images
    resized to ``image_size``, the loader's default when None); ``inputs``: the DataConfig fields that feed a model
    trained elsewhere (:func:`data.preprocessing.input_settings`); ``own_model``: the user's model file
    (:func:`model_files.own_model_config`) in place of the zoo's."""

    dataset: str
    path: Optional[str] = None
    label_column: Optional[str] = None
    id_column: Optional[str] = None
    image_size: Optional[int] = None
    inputs: Optional[Mapping[str, Any]] = None
    own_model: Optional[ModelConfig] = None

    @property
    def own_data(self) -> bool:
        return self.dataset in OWN_DATA

    def data(self, **settings: Any) -> DataConfig:
        """The run's DataConfig: this source's fields and ``settings`` (sizes, noise, classes, test fraction)."""
        return DataConfig(
            name=self.dataset,
            path=self.path,
            label_column=self.label_column,
            id_column=self.id_column,
            image_size=self.image_size,
            **settings,
            **(self.inputs or {}),
        )

    def model(self, zoo: ModelConfig) -> ModelConfig:
        """The user's model where one is given, else ``zoo``."""
        return self.own_model or zoo

    def check_model_file(self, needs_training: str = "", fix: str = "") -> None:
        """A model file goes with the user's data as it is: refused on a built-in dataset, and where the run would train
        a model (``needs_training``: what would, in the view's words; ``fix``: how to do without it)."""
        if self.own_model is None:
            return
        if not self.own_data:
            raise InputError(f"your model goes with your data: choose your CSV file or image folder for it, not {self.dataset!r}")
        if needs_training:
            raise InputError(f"{NOT_RETRAINED}: {needs_training}; {fix}, or choose an architecture to train here")


def own_data_training(kind: str, data: DataConfig) -> TrainConfig:
    """The default training of a zoo ``kind`` on the user's data (:func:`config.default_training`), its epochs set by
    how many training rows the file or folder holds (read without loading it)."""
    from influence_core.data.registry import peek_own_data

    return default_training(kind, peek_own_data(data).n_train(data))
