"""The web page of `mnist-dnn serve`: the Starlette app, the run catalogue and the static files in web/."""
