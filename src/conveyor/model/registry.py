"""What ``params.yaml`` may name: the estimators of each task, one entry each, and the metrics.

An estimator's entry (:class:`Estimator`) holds everything Conveyor knows about it: its class,
its keyword arguments, the space the tune stage searches by default, the types skops must trust
to load a fitted one, and how it converts to ONNX. Adding an estimator is adding its entry.

Kept free of scikit-learn imports so that loading the config (which checks these names) costs
milliseconds: every stage is its own process, and the stages that never fit a model (ingest,
validate) should not pay seconds of imports to check ``model.estimator``. An estimator class is
imported only when it is needed, and then only its own module.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "Task",
    "check_estimator",
    "check_estimator_name",
    "declares_parameters",
    "default_space",
    "entry_of",
    "estimator_class",
    "estimator_parameters",
    "higher_is_better",
    "metric_names",
    "trusted_types",
]

Task = Literal["classification", "regression"]
# What ``tune.space`` holds: parameter -> {low, high, log} or {choices}.
Space = Mapping[str, Mapping[str, Any]]
# How a fitted estimator becomes ONNX: skl2onnx's own converter, onnxmltools' converter for its
# library (registered with skl2onnx, see conveyor.model.onnx), or none (served with scikit-learn).
Converter = Literal["skl2onnx", "onnxmltools.lightgbm", "onnxmltools.xgboost", "none"]


@dataclass(frozen=True)
class Estimator:
    """One estimator ``model.estimator`` may name.

    Attributes
    ----------
    path : ``module:Class``, imported on first use.
    space : what the tune stage searches when ``tune.space`` is empty, in the form it takes.
    trusted : the types skops must trust to load a fitted one, beyond :data:`PIPELINE_TYPES`;
        the first is the fitted class itself, as skops names it.
    converter : how a fitted one becomes ONNX (:data:`Converter`).
    parameters : its keyword arguments, so that loading params.yaml checks ``model.params``
        without importing scikit-learn (a test compares them with the installed class); None:
        inspected on first use.
    extra_parameters : keyword arguments it takes through ``**kwargs`` that params.yaml may set.
    """

    path: str
    space: Space
    trusted: tuple[str, ...]
    converter: Converter
    parameters: frozenset[str] | None = None
    extra_parameters: frozenset[str] = frozenset()

    def cls(self) -> type[BaseEstimator]:
        """The class (its module imported now)."""
        module, _, attribute = self.path.partition(":")
        cls: type[BaseEstimator] = getattr(importlib.import_module(module), attribute)
        return cls


# Every type a Conveyor pipeline holds whatever its estimator (the features step, numpy's own).
# A model file that needs a type neither here nor in an entry's ``trusted`` is refused by name.
PIPELINE_TYPES = frozenset(
    {
        "builtins.slice",
        # features.derived: Conveyor's own transformers (conveyor.model.transformers) and the
        # target encoder's seeded folds.
        "conveyor.model.transformers.DateParts",
        "conveyor.model.transformers.SignedLog",
        "conveyor.model.transformers.TwoColumns",
        "sklearn.model_selection._split.KFold",
        "numpy.dtype",
        "numpy.random._mt19937.MT19937",
        "numpy.random.mtrand.RandomState",
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.impute._base.SimpleImputer",
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.MinMaxScaler",
        "sklearn.preprocessing._data.RobustScaler",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.preprocessing._encoders.OneHotEncoder",
        "sklearn.preprocessing._encoders.OrdinalEncoder",
        "sklearn.utils._bunch.Bunch",
    }
)

# Default spaces shared by an estimator's classifier and regressor: ranges that are sensible on
# small and medium tables.
FOREST_SPACE: Space = {
    "n_estimators": {"low": 50, "high": 300},
    "max_depth": {"low": 2, "high": 16},
    "min_samples_leaf": {"low": 1, "high": 10},
}
HIST_GRADIENT_BOOSTING_SPACE: Space = {
    "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
    "max_leaf_nodes": {"low": 8, "high": 64},
    "l2_regularization": {"low": 1e-6, "high": 10.0, "log": True},
}
LIGHTGBM_SPACE: Space = {
    "n_estimators": {"low": 50, "high": 400},
    "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
    "num_leaves": {"low": 8, "high": 64},
    "min_child_samples": {"low": 5, "high": 50},
    "reg_lambda": {"low": 1e-6, "high": 10.0, "log": True},
}
XGBOOST_SPACE: Space = {
    "n_estimators": {"low": 50, "high": 400},
    "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
    "max_depth": {"low": 2, "high": 8},
    "min_child_weight": {"low": 1.0, "high": 10.0},
    "reg_lambda": {"low": 1e-6, "high": 10.0, "log": True},
}
HIST_GRADIENT_BOOSTING_TYPES = (
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.link.Interval",
)
# The keyword arguments an estimator's classifier and regressor share.
FOREST_PARAMETERS = frozenset(
    {
        "bootstrap",
        "ccp_alpha",
        "criterion",
        "max_depth",
        "max_features",
        "max_leaf_nodes",
        "max_samples",
        "min_impurity_decrease",
        "min_samples_leaf",
        "min_samples_split",
        "min_weight_fraction_leaf",
        "monotonic_cst",
        "n_estimators",
        "n_jobs",
        "oob_score",
        "random_state",
        "verbose",
        "warm_start",
    }
)
HIST_GRADIENT_BOOSTING_PARAMETERS = frozenset(
    {
        "categorical_features",
        "early_stopping",
        "interaction_cst",
        "l2_regularization",
        "learning_rate",
        "loss",
        "max_bins",
        "max_depth",
        "max_features",
        "max_iter",
        "max_leaf_nodes",
        "min_samples_leaf",
        "monotonic_cst",
        "n_iter_no_change",
        "random_state",
        "scoring",
        "tol",
        "validation_fraction",
        "verbose",
        "warm_start",
    }
)
# lightgbm logs a warning per tree unless ``verbose: -1``, a keyword it takes through ``**kwargs``.
LIGHTGBM_EXTRA = frozenset({"verbose"})

ESTIMATORS: dict[Task, dict[str, Estimator]] = {
    "classification": {
        "logistic_regression": Estimator(
            "sklearn.linear_model:LogisticRegression",
            space={"C": {"low": 1e-3, "high": 1e2, "log": True}},
            trusted=("sklearn.linear_model._logistic.LogisticRegression",),
            converter="skl2onnx",
            parameters=frozenset(
                {
                    "C",
                    "class_weight",
                    "dual",
                    "fit_intercept",
                    "intercept_scaling",
                    "l1_ratio",
                    "max_iter",
                    "n_jobs",
                    "penalty",
                    "random_state",
                    "solver",
                    "tol",
                    "verbose",
                    "warm_start",
                }
            ),
        ),
        "random_forest": Estimator(
            "sklearn.ensemble:RandomForestClassifier",
            space=FOREST_SPACE,
            trusted=(
                "sklearn.ensemble._forest.RandomForestClassifier",
                "sklearn.tree._classes.DecisionTreeClassifier",
                "sklearn.tree._tree.Tree",
            ),
            converter="skl2onnx",
            parameters=FOREST_PARAMETERS | {"class_weight"},
        ),
        "hist_gradient_boosting": Estimator(
            "sklearn.ensemble:HistGradientBoostingClassifier",
            space=HIST_GRADIENT_BOOSTING_SPACE,
            trusted=(
                "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
                *HIST_GRADIENT_BOOSTING_TYPES,
                "sklearn._loss.link.LogitLink",
                "sklearn._loss.link.MultinomialLogit",
                "sklearn._loss.loss.HalfBinomialLoss",
                "sklearn._loss.loss.HalfMultinomialLoss",
            ),
            # skl2onnx 1.20 cannot convert it with numpy 2: the package stage says so and serves scikit-learn.
            converter="skl2onnx",
            parameters=HIST_GRADIENT_BOOSTING_PARAMETERS | {"class_weight"},
        ),
        "lightgbm": Estimator(
            "lightgbm:LGBMClassifier",
            space=LIGHTGBM_SPACE,
            trusted=("lightgbm.sklearn.LGBMClassifier", "lightgbm.basic.Booster", "collections.OrderedDict"),
            converter="onnxmltools.lightgbm",
            extra_parameters=LIGHTGBM_EXTRA,
        ),
        "xgboost": Estimator(
            "conveyor.model.estimators:XGBClassifier",
            space=XGBOOST_SPACE,
            trusted=("conveyor.model.estimators.XGBClassifier", "xgboost.core.Booster"),
            converter="onnxmltools.xgboost",
        ),
    },
    "regression": {
        "ridge": Estimator(
            "sklearn.linear_model:Ridge",
            space={"alpha": {"low": 1e-3, "high": 1e3, "log": True}},
            trusted=("sklearn.linear_model._ridge.Ridge",),
            converter="skl2onnx",
            parameters=frozenset(
                {"alpha", "copy_X", "fit_intercept", "max_iter", "positive", "random_state", "solver", "tol"}
            ),
        ),
        "random_forest": Estimator(
            "sklearn.ensemble:RandomForestRegressor",
            space=FOREST_SPACE,
            trusted=(
                "sklearn.ensemble._forest.RandomForestRegressor",
                "sklearn.tree._classes.DecisionTreeRegressor",
                "sklearn.tree._tree.Tree",
            ),
            converter="skl2onnx",
            parameters=FOREST_PARAMETERS,
        ),
        "hist_gradient_boosting": Estimator(
            "sklearn.ensemble:HistGradientBoostingRegressor",
            space=HIST_GRADIENT_BOOSTING_SPACE,
            trusted=(
                "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
                *HIST_GRADIENT_BOOSTING_TYPES,
                "sklearn._loss.link.IdentityLink",
                "sklearn._loss.loss.HalfSquaredError",
            ),
            converter="skl2onnx",
            parameters=HIST_GRADIENT_BOOSTING_PARAMETERS | {"quantile"},
        ),
        "lightgbm": Estimator(
            "lightgbm:LGBMRegressor",
            space=LIGHTGBM_SPACE,
            trusted=("lightgbm.sklearn.LGBMRegressor", "lightgbm.basic.Booster", "collections.OrderedDict"),
            converter="onnxmltools.lightgbm",
            extra_parameters=LIGHTGBM_EXTRA,
        ),
        "xgboost": Estimator(
            "xgboost:XGBRegressor",
            space=XGBOOST_SPACE,
            trusted=("xgboost.sklearn.XGBRegressor", "xgboost.core.Booster"),
            converter="onnxmltools.xgboost",
        ),
    },
}

HIGHER_IS_BETTER: dict[Task, dict[str, bool]] = {
    "classification": {
        "accuracy": True,
        "balanced_accuracy": True,
        "f1_macro": True,
        "precision_macro": True,
        "recall_macro": True,
        "roc_auc": True,
        "log_loss": False,
    },
    "regression": {"rmse": False, "mae": False, "r2": True},
}


def metric_names(task: Task) -> frozenset[str]:
    """The metrics computed for ``task``."""
    return frozenset(HIGHER_IS_BETTER[task])


def higher_is_better(task: Task, name: str) -> bool:
    """Whether a larger value of metric ``name`` is an improvement."""
    return HIGHER_IS_BETTER[task][name]


def estimator_class(task: Task, name: str) -> type[BaseEstimator]:
    """The scikit-learn class registered as ``name`` for ``task`` (imported on first use)."""
    return ESTIMATORS[task][name].cls()


def estimator_parameters(task: Task, name: str) -> frozenset[str]:
    """The keyword arguments the estimator registered as ``name`` accepts.

    From the entry's ``parameters`` when it lists them (no import); else from ``get_params``
    rather than the ``__init__`` signature: xgboost's classes declare their parameters on a base
    class and take ``**kwargs`` in their own ``__init__``.
    """
    entry = ESTIMATORS[task][name]
    declared = entry.parameters or frozenset(entry.cls()().get_params(deep=False))
    return declared | entry.extra_parameters


def declares_parameters(task: Task, name: str) -> bool:
    """Whether the entry lists its parameters, so checking ``model.params`` imports nothing."""
    return ESTIMATORS[task][name].parameters is not None


def default_space(task: Task, name: str) -> Space:
    """What the tune stage searches for estimator ``name`` when ``tune.space`` is empty."""
    return ESTIMATORS[task][name].space


def trusted_types() -> frozenset[str]:
    """Every type a saved Conveyor pipeline may hold: :data:`PIPELINE_TYPES` and each estimator's ``trusted``."""
    return PIPELINE_TYPES.union(*(entry.trusted for table in ESTIMATORS.values() for entry in table.values()))


def entry_of(estimator: object) -> Estimator:
    """The registry entry of a fitted estimator (by its class, as skops names it)."""
    fitted = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    for table in ESTIMATORS.values():
        for entry in table.values():
            if entry.trusted[0] == fitted:
                return entry
    raise KeyError(f"{fitted} is not a registered estimator")


def check_estimator_name(task: Task, name: str) -> None:
    """Raise ``ValueError`` naming ``model.estimator`` if ``name`` is not registered for ``task`` (imports nothing)."""
    registry = ESTIMATORS[task]
    if name not in registry:
        raise ValueError(f"model.estimator: {name!r} is not a {task} estimator; expected one of {sorted(registry)}")


def check_estimator(task: Task, name: str, params: Mapping[str, Any], *, where: str = "model.params") -> None:
    """Raise ``ValueError`` naming ``model.estimator`` or ``<where>.<key>`` if either is unusable.

    ``where`` is the params section being checked: ``model.params``, or ``tune.space`` for the
    parameters a study searches.
    """
    check_estimator_name(task, name)
    accepted = estimator_parameters(task, name)
    unknown = sorted(set(params) - accepted)
    if unknown:
        class_name = ESTIMATORS[task][name].path.partition(":")[2]
        raise ValueError(
            f"{where}.{unknown[0]}: not a parameter of {class_name} (model.estimator: {name}); "
            f"set {where} to {{}} for its defaults, or use some of {sorted(accepted)}"
        )
