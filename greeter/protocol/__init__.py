"""StateFun's request-reply protocol, for any StatefulFunctions: dispatch, messages, a runtime harness."""
