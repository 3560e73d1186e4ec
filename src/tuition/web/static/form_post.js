// Sends the buyer on to a gateway that takes a signed form (UnionPay's front
// consumption). Without JavaScript the buyer presses the button instead.
(function () {
  "use strict";
  var form = document.querySelector("form[data-autosubmit]");
  if (form) form.submit();
})();
